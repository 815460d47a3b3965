"""Which backend the user configured, what it still needs installed, and how to build it.

Backends are imported by name only when built, so the module loads without torch, nnInteractive
or nninteractive-client. Building a backend may do I/O (official server) or load a model (local),
so the widget calls :func:`make_backend` off the main thread.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from nninteractive_slicer.interface import Backend

KINDS = {
    "local": "Local GPU (this computer)",
    "remote": "nnInteractive-Slicer server",
    "official": "Official nnInteractive server",
}
NNINTERACTIVE_REQUIREMENT = "nninteractive>=2.6,<3"
CLIENT_REQUIREMENT = "nninteractive-client>=2.6,<3"
# Slicer ships no zstandard, so the remote backend would fall back to zlib: images compress several times
# slower and replies are ~25 % larger (benchmarks/results/python312-codecs.md). Offered, never required.
ZSTANDARD_REQUIREMENT = "zstandard>=0.22"
TORCH_REQUIREMENT = ">=2.3"


@dataclass(frozen=True)
class BackendConfig:
    """The Configuration tab's choices. ``api_key`` stays out of repr() and describe(), so out of logs."""

    kind: str = "local"
    url: str = ""
    api_key: str = field(default="", repr=False)
    device: str = "auto"
    model: str = ""  # an official model id, a model folder, or "" for the recommended model
    timeout: float = 30.0

    def describe(self) -> str:
        if self.kind == "local":
            return f"local nnInteractive, model {self.model or 'recommended'}, device {self.device}"
        key = "with an API key" if self.api_key else "without an API key"
        return f"{KINDS.get(self.kind, self.kind)} at {self.url or '(no URL)'} {key}"


def missing_requirements(kind: str) -> list[str]:
    """The pip requirements this kind of backend still lacks ("torch" is installed via PyTorchUtils)."""
    importlib.invalidate_caches()  # packages may have been installed since the last look
    missing = []
    if kind == "local":
        if importlib.util.find_spec("torch") is None:
            missing.append("torch")
        if importlib.util.find_spec("nnInteractive") is None:
            missing.append(NNINTERACTIVE_REQUIREMENT)
    elif kind == "official" and importlib.util.find_spec("nnInteractive") is None:
        missing.append(CLIENT_REQUIREMENT)
    return missing


def recommended_requirements(kind: str) -> list[str]:
    """Packages that make this kind of backend faster but that it can run without; offered with the install."""
    importlib.invalidate_caches()
    if kind == "remote" and importlib.util.find_spec("zstandard") is None:
        return [ZSTANDARD_REQUIREMENT]
    return []


def make_backend(config: BackendConfig) -> Backend:
    """Build the configured backend (blocking: may download or load a model, or contact a server)."""
    api_key = config.api_key or None
    if config.kind == "remote":
        from nninteractive_slicer.backends.remote import RemoteBackend
        from nninteractive_slicer.core.wire import register_optional_codecs

        register_optional_codecs()  # zstandard may have been installed since the wire format was loaded

        return RemoteBackend(config.url, api_key, timeout=config.timeout)
    if config.kind == "official":
        from nninteractive_slicer.backends.official import OfficialBackend

        return OfficialBackend(config.url, api_key, timeout=config.timeout)
    if config.kind == "local":
        from nninteractive_slicer.backends.local import LocalBackend

        model = config.model.strip()
        if model and Path(model).expanduser().is_dir():
            return LocalBackend(model_dir=model, device=config.device)
        return LocalBackend(model_id=model or None, device=config.device)
    raise ValueError(f"Unknown backend kind {config.kind!r}; expected one of {', '.join(KINDS)}.")


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
