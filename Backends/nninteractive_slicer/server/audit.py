"""The audit log of patient data: who uploaded, used and deleted which image, and when the server let one go.

One JSON object per line (``time``, ``event``, ``user``, ``digest``, and for some events ``session`` or
``reason``); never voxels, keys or file names. The file is rotated by size, keeping ``backups`` old files
(``audit.jsonl.1`` the newest of them), like any rotated log.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

Event = Literal["uploaded", "used", "deleted", "expired", "evicted"]


class AuditLog:
    """Appends audit records to ``path``; without a path it records nothing."""

    def __init__(self, path: Path | None = None, max_bytes: int = 10 * 1024 * 1024, backups: int = 10) -> None:
        self._logger: logging.Logger | None = None
        if path is None:
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                       encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.Logger(f"nninteractive_slicer.audit.{path}")  # not in the tree: never propagates
        self._logger.addHandler(handler)
        self._handler = handler

    def record(self, event: Event, user: str, digest: str, **details: str) -> None:
        if self._logger is None:
            return
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event,
                 "user": user, "digest": digest, **details}
        self._logger.info(json.dumps(entry))

    def close(self) -> None:
        if self._logger is not None:
            self._handler.close()
            self._logger.removeHandler(self._handler)
