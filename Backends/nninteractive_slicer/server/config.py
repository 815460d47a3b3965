"""Everything the server is configured with, in one place, so the CLI, the tests and /info agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.undo_history import DEFAULT_BUDGET_BYTES, DEFAULT_MAX_STEPS

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class Limits:
    """Input limits, checked before anything is allocated; /info reports them to clients."""

    max_dim: int = 4096  # voxels along one axis
    max_image_voxels: int = 1024**3
    max_image_bytes: int = 4 * GIB
    chunk_bytes: int = 16 * MIB  # raw bytes per upload chunk the server asks clients to send
    max_body_bytes: int = 24 * MIB  # any request body; a compressed chunk may grow a little
    max_prompt_voxels: int = 4 * MIB  # the box of one lasso or scribble (a 2048^2 slice): bounds its device time

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ServerConfig:
    model_id: str | None = None
    model_dir: Path | None = None
    device: str = "auto"
    torch_threads: int | None = None
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> user name; empty: no auth (loopback only)
    max_sessions: int = 4
    max_sessions_per_user: int | None = None  # None: all but one, so one user never holds every slot
    idle_timeout_s: float = 1800.0  # no real activity (heartbeats do not count)
    liveness_timeout_s: float = 90.0  # no request at all: the client is gone
    cache_bytes: int = 4 * GIB  # images held in memory
    cache_dir: Path | None = None  # optional on-disk image cache that survives restarts
    cache_dir_bytes: int = 20 * GIB
    session_memory_bytes: int | None = None  # all sessions together; None: a safe share of the machine's
    share_images: bool = False  # any user may bind any image (see docs/deployment.md for the trade-off)
    undo_steps: int = DEFAULT_MAX_STEPS  # per session
    undo_budget_bytes: int = DEFAULT_BUDGET_BYTES  # per session: compressed snapshots, oldest dropped first
    max_queued_per_session: int = 8  # device calls one session may have waiting or running; more get 503 busy
    prompt_budget_s: float | None = 30.0  # device time one prompt may use; past it, refused and rolled back
    limits: Limits = field(default_factory=Limits)

    @property
    def sessions_per_user(self) -> int:
        return self.max_sessions_per_user or max(1, self.max_sessions - 1)

    @property
    def upload_bytes_per_user(self) -> int:
        """Bytes of uploads in progress one user may hold: half the budget (``cache_bytes``), so one user's
        uploads, stalled or not, never keep everyone else's out."""
        return self.cache_bytes // 2
