"""Everything the server is configured with, in one place, so the CLI, the tests and /info agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..engine.undo_history import DEFAULT_BUDGET_BYTES, DEFAULT_MAX_STEPS
from ..protocol.bodies import Limits

__all__ = ["GIB", "MIB", "Limits", "ServerConfig"]

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class ServerConfig:
    model_id: str | None = None
    model_dir: Path | None = None
    device: str = "auto"
    torch_threads: int | None = None
    device_threads: int | None = None  # prompts of different sessions run at once; None: 2 on a CPU, 1 on a GPU
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
    # Patient data (docs/deployment.md): how long images stay, sealed at rest, who did what with them.
    image_retention_s: float = 10 * 3600.0  # after a user's last use of an image, from memory and disk
    cache_key: bytes | None = field(default=None, repr=False)  # seals --cache-dir (AES-GCM); never logged
    audit_log: Path | None = None  # JSON lines: uploaded, used, deleted, expired, evicted
    audit_log_bytes: int = 10 * MIB  # rotated past this size
    audit_log_backups: int = 10

    @property
    def sessions_per_user(self) -> int:
        return self.max_sessions_per_user or max(1, self.max_sessions - 1)

    @property
    def upload_bytes_per_user(self) -> int:
        """Bytes of uploads in progress one user may hold: half the budget (``cache_bytes``), so one user's
        uploads, stalled or not, never keep everyone else's out."""
        return self.cache_bytes // 2
