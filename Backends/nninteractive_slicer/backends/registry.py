"""The backends there are. Each backend class registers itself (as Slicer's SegmentStatistics plugins do)
with what a user interface needs to offer it: its kind (the value stored in settings), a label, the pip
requirements it still needs, and how it is built from a :class:`BackendConfig`.

Importing the built-in backends imports neither torch, nnInteractive nor the official client: they are
imported when a backend is built.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TypeVar

from ..config import BackendConfig, Requirement
from ..interface import Backend

__all__ = ["BackendConfig", "Requirement", "backend_class", "backend_classes", "build_backend", "current_kind",
           "describe", "local_kind", "missing_requirements", "parse_spec", "recommended_requirements",
           "register_backend", "server_kinds"]

B = TypeVar("B", bound="type[Backend]")

# Modules that register the built-in backends, in the order a user interface lists them.
BUILT_IN = ("local", "slicer_server", "official")

_REGISTERED: dict[str, type[Backend]] = {}


def register_backend(cls: B) -> B:
    """Class decorator: offer ``cls`` under its ``kind`` (a later registration of the same kind replaces it)."""
    _REGISTERED[cls.kind] = cls
    return cls


def backend_classes() -> dict[str, type[Backend]]:
    """Every registered backend class by kind, built-in ones first."""
    for module in BUILT_IN:
        importlib.import_module(f"{__package__}.{module}")
    return dict(_REGISTERED)


def backend_class(kind: str) -> type[Backend]:
    classes = backend_classes()
    if kind not in classes:
        raise ValueError(f"Unknown backend kind {kind!r}; expected one of {', '.join(classes)}.")
    return classes[kind]


def missing_requirements(kind: str) -> list[str]:
    """The pip requirements the backend of ``kind`` still lacks."""
    importlib.invalidate_caches()  # packages may have been installed since the last look
    return [r.pip for r in backend_class(kind).requirements if not _importable(r.module)]


def _importable(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (its parent packages are imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def local_kind() -> str:
    """The backend that runs the model in this process (the one without a URL)."""
    return next(kind for kind, cls in backend_classes().items() if not cls.needs_url)


def server_kinds() -> tuple[str, ...]:
    """The backends that run the model on a server, in the order a user interface lists them."""
    return tuple(kind for kind, cls in backend_classes().items() if cls.needs_url)


def current_kind(kind: str) -> str:
    """The kind a saved ``kind`` names today (a backend renamed keeps reading its former names)."""
    return next((cls.kind for cls in backend_classes().values() if kind in cls.former_kinds), kind)


def recommended_requirements(kind: str) -> list[str]:
    """The pip requirements that would make the backend of ``kind`` faster and are not installed."""
    importlib.invalidate_caches()
    return [r.pip for r in backend_class(kind).recommended if not _importable(r.module)]


def parse_spec(spec: str) -> tuple[str, str]:
    """The kind and URL of a ``--backend`` value: a kind that takes no URL, or a backend's prefix and a URL."""
    classes = backend_classes().values()
    for cls in classes:
        if not cls.needs_url and spec == cls.kind:
            return cls.kind, ""
    for cls in sorted((c for c in classes if c.needs_url), key=lambda c: -len(c.url_prefix)):  # longest first
        url = spec.removeprefix(cls.url_prefix)
        if spec.startswith(cls.url_prefix) and url.startswith(("http://", "https://")):
            return cls.kind, url
    forms = [repr(c.kind) if not c.needs_url else f"{repr(c.url_prefix) + ' and ' if c.url_prefix else ''}a server "
             f"URL ({c.label})" for c in classes]
    raise ValueError(f"--backend {spec!r}: use {', '.join(forms[:-1])} or {forms[-1]}; a server URL is "
                     "http://host:port or https://...")


def describe(config: BackendConfig) -> str:
    """The choice in words, for the user and the log (never the API key)."""
    return backend_class(config.kind).describe(config)


def build_backend(config: BackendConfig) -> Backend:
    """Build the configured backend (blocking: a local one loads its model)."""
    return backend_class(config.kind).from_config(config)
