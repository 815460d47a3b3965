"""Server sessions: one engine session per client, owned by the user who created it, capped in number and
reaped on two clocks (idle: no real work; dead: not even a heartbeat).

A session's state changes only on the device thread (see :mod:`.runtime`), so requests of one session never
race each other; ``revision`` counts those changes and lets a client detect a call it lost to a timeout.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..engine.engine import ModelEngine
from ..errors import ServerBusyError
from ..protocol.contract import ErrorCode
from .errors import ApiError
from .memory import gib, session_bytes


def session_unknown(session_id: str) -> ApiError:
    return ApiError(ErrorCode.SESSION_UNKNOWN, f"Session {session_id[:8]}... does not exist (expired, closed or "
                                            "another user's); start a new one.")


@dataclass(eq=False)
class ServerSession:
    id: str
    owner: str
    engine: ModelEngine
    revision: int = 0
    image_digest: str | None = None
    closed: bool = False  # set on the device thread when the engine is released
    binding: bool = False  # a new image is being set (between set_image's two halves); set on the device thread
    inflight: int = 0  # requests being served; never reaped while > 0
    memory_bytes: int = 0  # what its image costs it (see :mod:`.memory`), reserved before the image is set
    last_active: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)

    @property
    def held_bytes(self) -> int:
        """What the session holds against the memory budget: its image's share and its undo snapshots so far."""
        return self.memory_bytes + (0 if self.closed else self.engine.history.nbytes)

    @property
    def shape(self) -> tuple[int, int, int] | None:
        return None if self.closed else self.engine.image_shape

    def state(self) -> dict[str, Any]:
        """What a client sees of the session (exact when read on the device thread)."""
        shape, history = self.shape, self.engine.undo_state
        return {"session_id": self.id, "revision": self.revision, "image_digest": self.image_digest,
                "shape": list(shape) if shape else None, "prompt_count": self.engine.prompt_count,
                "can_undo": self.engine.can_undo, "undo": history.undo, "redo": history.redo}


class SessionRegistry:
    """The live sessions. Creating one reserves a slot first, so the cap holds under concurrency."""

    def __init__(self, max_sessions: int, idle_timeout_s: float, liveness_timeout_s: float,
                 max_per_user: int | None = None, memory_budget: int | None = None) -> None:
        self.max_sessions = max_sessions
        self.memory_budget = memory_budget
        self.max_per_user = max_per_user or max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.liveness_timeout_s = liveness_timeout_s
        self._sessions: dict[str, ServerSession] = {}
        self._reserved: dict[str, int] = {}  # per user: slots taken while their engine sessions are built
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    @contextmanager
    def slot(self, owner: str) -> Iterator[str]:
        """Reserve a slot and a new session id while the engine session is built; busy when the server, or
        the user's share of it, is full."""
        with self._lock:
            held = [s for s in self._sessions.values() if s.owner == owner]
            if len(held) + self._reserved.get(owner, 0) >= self.max_per_user:
                raise ServerBusyError(
                    f"You already hold {self.max_per_user} sessions, the most one user may hold on this server: "
                    "close one (another 3D Slicer of yours?) or wait until it times out.", self._retry_after(held))
            if len(self._sessions) + sum(self._reserved.values()) >= self.max_sessions:
                raise ServerBusyError(
                    f"The server is serving its maximum of {self.max_sessions} sessions; try again later.",
                    self._retry_after(self._sessions.values()),
                )
            self._reserved[owner] = self._reserved.get(owner, 0) + 1
        try:
            yield secrets.token_urlsafe(18)
        finally:
            with self._lock:
                self._reserved[owner] -= 1
                if not self._reserved[owner]:
                    del self._reserved[owner]

    def check_fits(self, shape: tuple[int, ...]) -> int:
        """The memory a session needs for an image of ``shape``; 507 if it exceeds the whole budget."""
        need = session_bytes(shape)
        if self.memory_budget is not None and need > self.memory_budget:
            raise ApiError(ErrorCode.OUT_OF_MEMORY,
                           f"An image of {list(shape)} voxels needs about {gib(need)} of server memory for its "
                           f"session; this server gives all sessions together {gib(self.memory_budget)}. Crop or "
                           "resample the image.")
        return need

    def reserve_memory(self, session: ServerSession, shape: tuple[int, ...]) -> None:
        """Admit an image of ``shape`` into ``session`` if the memory of all sessions allows it (503 if it
        will once other sessions close, 507 if never). Other sessions count with the undo snapshots they hold."""
        need = self.check_fits(shape)
        with self._lock:
            others = sum(s.held_bytes for s in self._sessions.values() if s is not session)
            if self.memory_budget is not None and others + need > self.memory_budget:
                raise ServerBusyError(
                    f"Not enough server memory now: this image needs about {gib(need)}, and other sessions hold "
                    f"{gib(others)} (undo snapshots included) of the {gib(self.memory_budget)} all sessions may use; "
                    "try again when one closes.",
                    self._retry_after(s for s in self._sessions.values() if s is not session))
            session.memory_bytes = need

    def add(self, session: ServerSession) -> None:
        with self._lock:
            self._sessions[session.id] = session

    @contextmanager
    def use(self, session_id: str, owner: str, active: bool = True) -> Iterator[ServerSession]:
        """The caller's session for the length of a request (never reaped meanwhile); 404 if not theirs."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.owner != owner:
                raise session_unknown(session_id)
            session.inflight += 1
            self._touch(session, active)
        try:
            yield session
        finally:
            with self._lock:
                session.inflight -= 1
                self._touch(session, active)

    def remove(self, session_id: str, owner: str) -> ServerSession:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.owner != owner:
                raise session_unknown(session_id)
            return self._sessions.pop(session_id)

    def remove_using(self, owner: str, digest: str) -> list[ServerSession]:
        """Remove and return ``owner``'s sessions on the image ``digest`` (the user deleted it)."""
        with self._lock:
            gone = [s for s in self._sessions.values() if s.owner == owner and s.image_digest == digest]
            for s in gone:
                del self._sessions[s.id]
        return gone

    def images_in_use(self) -> list[tuple[str, str]]:
        """(user, digest) of every session's image: in use now, whatever the image retention says."""
        with self._lock:
            return [(s.owner, s.image_digest) for s in self._sessions.values() if s.image_digest is not None]

    def remove_all(self) -> list[ServerSession]:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        return sessions

    def expired(self, reason: str) -> list[ServerSession]:
        """Remove and return sessions past the idle (``reason="idle"``) or liveness (``"dead"``) timeout."""
        now = time.monotonic()
        with self._lock:
            gone = [
                s for s in self._sessions.values()
                if s.inflight == 0 and (
                    now - s.last_active > self.idle_timeout_s if reason == "idle"
                    else now - s.last_seen > self.liveness_timeout_s
                )
            ]
            for s in gone:
                del self._sessions[s.id]
        return gone

    @staticmethod
    def _touch(session: ServerSession, active: bool) -> None:
        session.last_seen = time.monotonic()
        if active:
            session.last_active = session.last_seen

    def _retry_after(self, sessions: Iterable[ServerSession]) -> float:
        """Seconds until the first of ``sessions`` could be reaped (a hint; sessions in use may live longer)."""
        now = time.monotonic()
        waits = [
            min(s.last_active + self.idle_timeout_s, s.last_seen + self.liveness_timeout_s) - now
            for s in sessions
        ]
        return min(max(1.0, min(waits, default=5.0)), 300.0)
