"""Which backend the user configured, what it still needs installed, and how to build it: look-ups in the
package's backend registry (:mod:`nninteractive_slicer.backends.registry`), and how far a model download is.

Backends are registered without importing torch, nnInteractive or nninteractive-client, so the module loads
without them. Building a backend may load a model (local), so the widget calls :func:`build_backend` off the
main thread.
"""

from __future__ import annotations

from nninteractive_slicer.backends.registry import (
    BackendConfig,
    backend_class,
    backend_classes,
    build_backend,
    current_kind,
    describe,
    local_kind,
    missing_requirements,
    recommended_requirements,
    server_kinds,
)

__all__ = ["KINDS", "BackendConfig", "backend_class", "build_backend", "current_kind", "describe", "local_kind",
           "missing_requirements", "model_download_bytes", "recommended_requirements", "server_kinds"]

# Kind (the value stored in the module's settings) -> label, in the order the Configuration tab lists them.
KINDS = {kind: cls.label for kind, cls in backend_classes().items()}


def model_download_bytes() -> int:
    """Bytes of nnInteractive models on disk so far (including partial downloads), to show download progress."""
    try:
        from nnInteractive.model_management import get_model_root_dir
    except ImportError:
        return 0
    models = get_model_root_dir() / "models"
    total = 0
    for path in models.rglob("*") if models.is_dir() else ():
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # a partial file renamed or removed while we look
            continue
    return total
