"""What a user chose: a backend's kind and settings, and the pip requirements a backend declares.

Plain values below the interface: :mod:`.interface` and :mod:`.backends.registry` both use them, and neither
imports the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Requirement:
    """A pip requirement and the module that shows it is installed (inside nnInteractive, a namespace package
    that the official client alone also provides, the module tells the two apart)."""

    module: str
    pip: str


@dataclass(frozen=True)
class BackendConfig:
    """A user's backend choice. ``api_key`` stays out of repr(), so out of logs; the registry's ``describe``
    says it in words."""

    kind: str  # a registered backend kind (see backends.registry)
    url: str = ""
    api_key: str = field(default="", repr=False)
    device: str = "auto"
    model: str = ""  # an official model id, a model folder, or "" for the recommended model
    timeout: float = 30.0
