"""``--backend local|URL|official+URL``: which backend a headless run uses. API keys come from the
environment only, so they never appear in a shell history or a process list."""

from __future__ import annotations

import os

from ..interface import Backend

API_KEY_VARIABLE = "NNINTERACTIVE_API_KEY"
OFFICIAL_PREFIX = "official+"


class BackendSpecError(ValueError):
    """The --backend value names no backend."""


def check_spec(spec: str) -> str:
    """The backend kind of ``spec`` (local, remote, official); raises BackendSpecError before anything starts."""
    if spec == "local":
        return "local"
    url = spec[len(OFFICIAL_PREFIX):] if spec.startswith(OFFICIAL_PREFIX) else spec
    if not url.startswith(("http://", "https://")):
        raise BackendSpecError(
            f"--backend {spec!r}: use 'local', a server URL (http://host:port) or 'official+' and the URL of an "
            "official nninteractive-server."
        )
    return "official" if spec.startswith(OFFICIAL_PREFIX) else "remote"


def make_backend(spec: str, model: str | None = None, device: str = "auto", timeout: float = 120.0) -> Backend:
    """Build the backend; loads a model (local) or contacts the server (remote, official)."""
    kind = check_spec(spec)
    api_key = os.environ.get(API_KEY_VARIABLE) or None
    if kind == "local":
        from ..backends.local import LocalBackend

        if model and os.path.isdir(model):
            return LocalBackend(model_dir=model, device=device)
        return LocalBackend(model_id=model or None, device=device)
    if kind == "official":
        from ..backends.official import OfficialBackend

        return OfficialBackend(spec[len(OFFICIAL_PREFIX):], api_key, timeout=timeout)
    from ..backends.remote import RemoteBackend

    return RemoteBackend(spec, api_key, timeout=timeout)
