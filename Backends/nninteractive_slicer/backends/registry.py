"""The backends there are. Each backend class registers itself (as Slicer's SegmentStatistics plugins do)
with what a user interface needs to offer it: its kind (the value stored in settings), a label, the pip
requirements it still needs, and how it is built from a :class:`BackendConfig`.

Importing the built-in backends imports neither torch, nnInteractive nor the official client: they are
imported when a backend is built.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ..interface import Backend

B = TypeVar("B", bound="type[Backend]")

# Modules that register the built-in backends, in the order a user interface lists them.
BUILT_IN = ("local", "slicer_server", "official")

_REGISTERED: dict[str, type[Backend]] = {}


@dataclass(frozen=True)
class Requirement:
    """A pip requirement and the module that shows it is installed (inside nnInteractive, a namespace package
    that the official client alone also provides, the module tells the two apart)."""

    module: str
    pip: str


@dataclass(frozen=True)
class BackendConfig:
    """A user's backend choice. ``api_key`` stays out of repr() and describe(), so out of logs."""

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
        label = backend_classes()[self.kind].label if self.kind in backend_classes() else self.kind
        return f"{label} at {self.url or '(no URL)'} {key}"


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


def build_backend(config: BackendConfig) -> Backend:
    """Build the configured backend (blocking: a local one loads its model)."""
    return backend_class(config.kind).from_config(config)
