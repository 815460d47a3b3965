"""The audit log of patient data: who uploaded, used and deleted which image, and when the server let one go.

One JSON object per line (``time``, ``event``, ``user``, ``digest``, and for ``used`` the ``session``);
never voxels, keys or file names. The file is rotated by size, keeping ``backups`` old files
(``PATH.1`` the newest of them). Each record is appended and the file rotated under a lock on
``PATH.lock``, so several servers on one machine (Ray replicas) can share one log without losing lines.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

Event = Literal["uploaded", "used", "deleted", "expired", "evicted"]


class AuditLog:
    """Appends audit records to ``path``; without a path it records nothing."""

    def __init__(self, path: Path | None = None, max_bytes: int = 10 * 1024 * 1024, backups: int = 10) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._lock = threading.Lock()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def record(self, event: Event, user: str, digest: str, **details: str) -> None:
        if self.path is None:
            return
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event,
                 "user": user, "digest": digest, **details}
        line = (json.dumps(entry) + "\n").encode()
        with self._lock, open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            try:
                size = os.path.getsize(self.path)
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def _rotate(self) -> None:
        """PATH -> PATH.1 -> ... -> PATH.backups (the oldest goes)."""
        for index in range(self.backups - 1, 0, -1):
            older = Path(f"{self.path}.{index}")
            if older.exists():
                os.replace(older, f"{self.path}.{index + 1}")
        if self.backups:
            os.replace(self.path, f"{self.path}.1")  # type: ignore[arg-type]
        else:
            Path(self.path).unlink()  # type: ignore[arg-type]
