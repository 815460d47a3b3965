"""The backend choice as the design promises it: local where a CUDA GPU can run the model, else the server.

The Configuration tab keeps both halves (the local device and model, and one server's address and
key), so "Automatic" can pick either and a local backend that fails can fall back to the server.
Probing CUDA imports torch, so :func:`resolve` runs on a worker thread, never in a GUI callback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from nninteractive_slicer.errors import BackendUnavailableError, OutOfMemoryError

from .backends import KINDS, BackendConfig, local_kind, missing_requirements, server_kinds

AUTOMATIC = "automatic"
CHOICES = {AUTOMATIC: "Automatic (local GPU, else the server)", **KINDS}
LOCAL = local_kind()  # the backend on this computer; the others run on a server
SERVER_KINDS = server_kinds()
DEVICES = ("auto", "cpu", "cuda")  # offered at first; cuda:N are added as torch finds them


@dataclass(frozen=True)
class BackendChoice:
    """What the user chose: a kind (or Automatic), the local settings and the server settings."""

    kind: str = AUTOMATIC
    local: BackendConfig = field(default_factory=lambda: BackendConfig(LOCAL))
    server: BackendConfig = field(default_factory=lambda: BackendConfig(SERVER_KINDS[0]))

    def __post_init__(self) -> None:
        if self.kind not in CHOICES:
            raise ValueError(f"Unknown backend choice {self.kind!r}; expected one of {', '.join(CHOICES)}.")
        if self.server.kind not in SERVER_KINDS:
            raise ValueError(f"The server must be one of {', '.join(SERVER_KINDS)}, got {self.server.kind!r}.")

    @property
    def has_server(self) -> bool:
        return bool(self.server.url.strip())


def cuda_devices() -> list[str]:
    """``cuda:N`` for each CUDA device torch sees (imports torch, so off the GUI thread)."""
    from nninteractive_slicer.engine.model_loading import cuda_devices as found

    return found()


def resolve(
    choice: BackendChoice,
    platform: str = sys.platform,
    devices: Callable[[], list[str]] = cuda_devices,
    missing: Callable[[str], list[str]] = missing_requirements,
) -> tuple[BackendConfig, str]:
    """The backend to build for ``choice`` and, in words, why. Raises BackendUnavailableError when none can run."""
    if choice.kind == LOCAL:
        return choice.local, "chosen in the Configuration tab"
    if choice.kind in SERVER_KINDS:
        return replace(choice.server, kind=choice.kind), "chosen in the Configuration tab"
    if platform == "darwin":
        reason = "Automatic: on macOS the model runs on the server (it needs a CUDA GPU)"
    elif missing(LOCAL):
        reason = "Automatic: the local backend is not installed, so the model runs on the server"
    else:
        found = devices()
        wanted = choice.local.device
        if found and (wanted in ("auto", "cuda") or wanted in found):
            return choice.local, f"Automatic: runs here on {wanted if wanted in found else found[0]}"
        reason = "Automatic: no usable CUDA GPU here, so the model runs on the server"
    if not choice.has_server:
        raise BackendUnavailableError(
            f"{reason}, but no server address is set: enter one in the Configuration tab, or choose "
            "'Local' to run on this computer's CPU (slow)."
        )
    return choice.server, reason


def can_fall_back(choice: BackendChoice, used: BackendConfig | None, error: BaseException) -> bool:
    """Whether a failure of the local backend is one a server would not have (memory, no GPU, no model)."""
    if used is None or used.kind != LOCAL or choice.kind not in (AUTOMATIC, LOCAL) or not choice.has_server:
        return False
    return isinstance(error, (OutOfMemoryError, BackendUnavailableError))


def fallen_back(choice: BackendChoice) -> BackendChoice:
    """The same choice with the configured server as the backend."""
    return replace(choice, kind=choice.server.kind)
