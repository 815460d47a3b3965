"""Which backend the user configured, what it still needs installed, and how to build it: look-ups in the
package's backend registry (:mod:`nninteractive_slicer.backends.registry`).

Backends are registered without importing torch, nnInteractive or nninteractive-client, so the module loads
without them. Building a backend may load a model (local), so the widget calls :func:`make_backend` off the
main thread.
"""

from __future__ import annotations

import importlib.util

from nninteractive_slicer.backends.registry import BackendConfig, backend_classes, build_backend
from nninteractive_slicer.backends.registry import missing_requirements as _missing_requirements
from nninteractive_slicer.interface import Backend

# Slicer ships no zstandard, so the remote backend would fall back to zlib: images compress several times
# slower and replies are ~25 % larger (benchmarks/results/python312-codecs.md). Offered, never required.
ZSTANDARD_REQUIREMENT = "zstandard>=0.22"
__all__ = ["KINDS", "ZSTANDARD_REQUIREMENT", "BackendConfig", "make_backend",
           "missing_requirements", "model_download_bytes", "recommended_requirements"]

# Kind (the value stored in the module's settings) -> label, in the order the Configuration tab lists them.
KINDS = {kind: cls.label for kind, cls in backend_classes().items()}


def missing_requirements(kind: str) -> list[str]:
    """The pip requirements this kind of backend still lacks ("torch" is installed via PyTorchUtils)."""
    return _missing_requirements(kind)


def recommended_requirements(kind: str) -> list[str]:
    """Packages that make this kind of backend faster but that it can run without; offered with the install."""
    importlib.invalidate_caches()
    if kind == "remote" and importlib.util.find_spec("zstandard") is None:
        return [ZSTANDARD_REQUIREMENT]
    return []


def make_backend(config: BackendConfig) -> Backend:
    """Build the configured backend (blocking: a local one downloads or loads its model)."""
    if config.kind == "remote":
        from nninteractive_slicer.core.wire import register_optional_codecs

        register_optional_codecs()  # zstandard may have been installed since the wire format was loaded
    return build_backend(config)


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
