"""``--backend local|URL|official+URL``: which backend a headless run uses. API keys come from the
environment only, so they never appear in a shell history or a process list."""

from __future__ import annotations

import os

from ..backends.registry import BackendConfig, build_backend, parse_spec
from ..interface import Backend

API_KEY_VARIABLE = "NNINTERACTIVE_API_KEY"


class BackendSpecError(ValueError):
    """The --backend value names no backend."""


def check_spec(spec: str) -> str:
    """The backend kind of ``spec``; raises BackendSpecError before anything starts."""
    return _parsed(spec)[0]


def backend_config(spec: str, model: str | None = None, device: str = "auto", timeout: float = 120.0
                   ) -> BackendConfig:
    """What ``spec`` chooses, with the API key from the environment."""
    kind, url = _parsed(spec)
    return BackendConfig(kind, url, os.environ.get(API_KEY_VARIABLE, ""), device, model or "", timeout)


def make_backend(spec: str, model: str | None = None, device: str = "auto", timeout: float = 120.0) -> Backend:
    """Build the backend through the registry (a local one loads its model)."""
    return build_backend(backend_config(spec, model, device, timeout))


def _parsed(spec: str) -> tuple[str, str]:
    try:
        return parse_spec(spec)
    except ValueError as exc:
        raise BackendSpecError(str(exc)) from None
