"""One server's working parts: the model (loaded once), the device threads, sessions, images, metrics.

Request handlers decode and validate in FastAPI's thread pool and await only the engine call here, on a
device thread, while uploads and decoding of other requests go on. On a GPU predictions of all sessions run
one at a time; on a CPU, prompts of two sessions may run at once (``device_threads``). The device threads take
users in turn, then each user's sessions in turn (:mod:`..engine.device_worker`); a session may queue at most
``max_queued_per_session`` calls, and one prompt may use at most ``prompt_budget_s`` of device time
(:class:`..engine.engine.ModelEngine`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, TypeVar

from ..engine.device_worker import SHARED, DeviceWorker, Lane
from ..engine.engine import Engine, ModelEngine
from ..engine.model_loading import (
    choose_device,
    device_threads,
    load_model,
    start_torch_threads,
    torch_thread_count,
)
from ..engine.snapshots import SnapshotScheduler
from ..protocol.contract import SERVER_NAME, ErrorCode
from .audit import AuditLog
from .auth import Authenticator
from .config import ServerConfig
from .errors import ApiError
from .images import ImageCache
from .memory import BodyGate, default_budget, release_freed_memory
from .metrics import Metrics
from .sessions import ServerSession, SessionRegistry, session_unknown
from .uploads import Uploads

log = logging.getLogger("nninteractive_slicer.server")
T = TypeVar("T")

BODIES_PER_USER = 4  # chunk bodies of one user held in memory at once


class ServerRuntime:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        device = choose_device(config.device)  # before the worker: a CPU may get more than one device thread
        torch_threads = torch_thread_count(config.torch_threads)
        threads = device_threads(device, config.device_threads, torch_threads)
        self.worker = DeviceWorker("nninteractive-server-device", threads,
                                   functools.partial(start_torch_threads, torch_threads))
        try:
            model = self.worker.call(load_model, config.model_id, config.model_dir, str(device), torch_threads,
                                     SERVER_NAME)
        except BaseException:
            self.worker.stop()
            raise
        self.snapshots = SnapshotScheduler()
        self.model = replace(model, capabilities=replace(model.capabilities, undo_depth=config.undo_steps))
        self.auth = Authenticator(config.api_keys)
        self.sessions = SessionRegistry(config.max_sessions, config.idle_timeout_s, config.liveness_timeout_s,
                                        config.sessions_per_user,
                                        config.session_memory_bytes or default_budget(self.model.device))
        self.cache = ImageCache(config.cache_bytes, config.cache_dir, config.cache_dir_bytes, key=config.cache_key,
                                share_images=config.share_images, retention_s=config.image_retention_s,
                                audit=AuditLog(config.audit_log, config.audit_log_bytes, config.audit_log_backups))
        self.uploads = Uploads(self.cache, config.limits, config.cache_bytes, config.upload_bytes_per_user,
                              self.sessions.check_fits)
        # chunk bodies in flight: a client sends 3 at once; a few of one user's at a time, the rest wait unread
        self.bodies = BodyGate(min(config.upload_bytes_per_user, BODIES_PER_USER * config.limits.chunk_bytes))
        self.metrics = Metrics({
            "nninteractive_sessions": ("Open sessions.", lambda: len(self.sessions)),
            "nninteractive_sessions_max": ("Session cap.", lambda: config.max_sessions),
            "nninteractive_image_cache_bytes": ("Bytes of images held in memory.", lambda: self.cache.nbytes),
            "nninteractive_image_cache_images": ("Images held in memory.", lambda: len(self.cache)),
            "nninteractive_upload_pending_bytes": ("Bytes of uploads in progress.", lambda: self.uploads.nbytes),
            "nninteractive_device_queue_length": ("Device calls queued or running.", lambda: self.worker.queue_length),
        })

    # -- the device thread ---------------------------------------------------------------------------
    async def on_device(self, fn: Callable[..., T], *args: Any, lane: Lane = SHARED, limit: int | None = None) -> T:
        return await asyncio.wrap_future(self.worker.submit(fn, *args, lane=lane, limit=limit))

    async def in_session(self, session: ServerSession, expected_revision: int | None,
                         fn: Callable[[Engine], T], mutates: bool = True, binding: bool = False
                         ) -> tuple[T, dict[str, Any]]:
        """Run ``fn(engine)`` on the device thread; returns its result and the session's state right after."""
        return await asyncio.wrap_future(self.session_call(session, expected_revision, fn, mutates, binding))

    def session_call(self, session: ServerSession, expected_revision: int | None, fn: Callable[[Engine], T],
                     mutates: bool = True, binding: bool = False) -> Future[tuple[T, dict[str, Any]]]:
        """Queue ``fn(engine)`` in the session's lane of the device thread (see :meth:`in_session`).

        A mutating call that succeeds bumps the revision. The checks run on the device thread too, so
        they see the session exactly as ``fn`` will. While a new image is being bound (between the two halves
        of set_image) only the bind's own call (``binding``) runs; any other is refused, never run on a
        half-set image."""

        def run() -> tuple[T, dict[str, Any]]:
            if session.closed:
                raise session_unknown(session.id)
            if session.binding and not binding:
                raise ApiError(ErrorCode.NO_IMAGE, "A new image is being set on this session: send this call again "
                                                   "once it is set.")
            if expected_revision is not None and expected_revision != session.revision:
                raise ApiError(ErrorCode.REVISION_MISMATCH,
                               f"The session is at revision {session.revision}, the client expected "
                               f"{expected_revision}: a call was lost; rebuild the session.")
            result = fn(session.engine)
            if mutates:
                session.revision += 1
            return result, session.state()

        limit = None if binding else self.config.max_queued_per_session  # a bind's second half always runs
        return self.worker.submit(run, lane=(session.owner, session.id), limit=limit)

    # -- sessions ------------------------------------------------------------------------------------
    async def create_session(self, owner: str) -> ServerSession:
        with self.sessions.slot(owner) as session_id:
            engine = await self.on_device(ModelEngine, self.model, self.config.undo_budget_bytes,
                                          self.config.undo_steps, self.config.prompt_budget_s, self.snapshots,
                                          lane=(owner, ""))
            session = ServerSession(session_id, owner, engine)
            self.sessions.add(session)
        log.info("session created", extra={"event": "session_created", "user": owner, "session": session_id[:8],
                                            "sessions": len(self.sessions)})
        return session

    def close_session(self, session: ServerSession, reason: str) -> None:
        """Release the engine session on the device thread (after any call already queued for it)."""

        def close() -> None:
            if not session.closed:
                session.closed = True
                session.engine.close()
                release_freed_memory()  # the session's buffers, and what its prompts left in the allocator

        self.worker.submit(close, lane=(session.owner, session.id))
        log.info("session closed", extra={"event": "session_closed", "user": session.owner,
                                           "session": session.id[:8], "reason": reason})

    async def reap_forever(self, reason: str, timeout_s: float) -> None:
        """Reap sessions past one of the two timeouts; the liveness timer also drops abandoned uploads."""
        interval = min(max(timeout_s / 4, 0.1), 30.0)
        while True:
            await asyncio.sleep(interval)
            for session in self.sessions.expired(reason):
                self.metrics.reaped.labels(reason).inc()
                self.close_session(session, reason)
            if reason == "dead":
                self.uploads.reap(max(timeout_s, 30.0))

    def shutdown(self) -> None:
        for session in self.sessions.remove_all():
            self.close_session(session, "shutdown")
        self.worker.stop()
        self.snapshots.stop()
