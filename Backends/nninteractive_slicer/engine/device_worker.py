"""Persistent threads that own the device, shared fairly between users.

cuDNN's autotune cache is per thread: upstream measured about 0.11 s against 1.2 s per
interaction on an RTX 4090 when every call came from a new thread. So every call that touches
torch (model loading included) runs on these threads, for the local backend and for all
sessions of the server alike: one thread on a GPU, which serialises predictions on the device.

On a CPU, one prompt of a small network keeps several torch threads only partly busy (its serial parts
leave them waiting), so a CPU server may run a second thread: prompts of two sessions then run at once.
A session's calls never run at once.

Serving calls in arrival order would let one user's queue of prompts hold everyone else back (24
queued lassos made another user's point wait 24 of them). So each call goes into a lane, a
``(user, session)`` pair: the thread takes the next call of the next user in turn, and within a user
the next call of the next session in turn. Within one lane calls keep their order. A lane may be
bounded, so that one session cannot queue without end.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, TypeVar

from ..errors import BackendUnavailableError, ServerBusyError

T = TypeVar("T")
log = logging.getLogger("nninteractive_slicer.device")

Lane = tuple[Hashable, Hashable]  # (user, session)
SHARED: Lane = ("", "")  # calls of no user: model loading, the local backend


def _join(turns: OrderedDict[Hashable, Any], key: Hashable, last: Hashable, new: Callable[[], Any]) -> Any:
    """The entry of ``key`` in ``turns``; one that joins goes just before ``last`` (the one served last, so at the
    end of the turns), not after it: a user who just arrived is served before the user who just had a turn."""
    if key in turns:
        return turns[key]
    entry = turns[key] = new()
    if last in turns and last != key:
        turns.move_to_end(last)
    return entry


class DeviceWorker:
    """Runs submitted calls on ``threads`` daemon threads, round-robin over users, then sessions; one call of a
    lane at a time. ``on_start()`` runs once on each thread before its first call."""

    def __init__(self, name: str = "nninteractive-device", threads: int = 1,
                 on_start: Callable[[], None] | None = None) -> None:
        if threads < 1:
            raise ValueError(f"A device worker needs at least one thread, not {threads}.")
        # user -> session -> calls; both levels in turn order (the next to serve first)
        self._lanes: OrderedDict[Hashable, OrderedDict[Hashable, deque[Any]]] = OrderedDict()
        self._lengths: dict[Lane, int] = {}  # calls queued or running, per lane
        self._running: set[Lane] = set()
        self._pending = 0
        self._last: Lane = SHARED  # the lane served last
        self._wake = threading.Condition()
        self._stopped = False
        self._on_start = on_start
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}" if i else name, daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], *args: Any, lane: Lane = SHARED, limit: int | None = None) -> Future[T]:
        """Queue ``fn(*args)`` in ``lane``; ServerBusyError when that lane already holds ``limit`` calls."""
        future: Future[T] = Future()
        with self._wake:
            if self._stopped:
                raise BackendUnavailableError("This backend was closed: connect it again.")
            held = self._lengths.get(lane, 0)
            if limit is not None and held >= limit:
                raise ServerBusyError(f"This session already has {held} calls waiting for the device, the most "
                                      "one session may queue: wait for their results before sending more.", 1.0)
            user, session = lane
            sessions = _join(self._lanes, user, self._last[0], OrderedDict)
            _join(sessions, session, self._last[1] if user == self._last[0] else None, deque).append((future, fn, args))
            self._lengths[lane] = held + 1
            self._pending += 1
            self._wake.notify()
        return future

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the worker and wait for it; runs inline when already on the worker."""
        if threading.current_thread() in self._threads:
            return fn(*args)
        return self.submit(fn, *args).result()

    @property
    def threads(self) -> int:
        return len(self._threads)

    @property
    def queue_length(self) -> int:
        """Calls submitted and not yet finished (the running one included)."""
        return self._pending

    def lane_length(self, lane: Lane) -> int:
        """Calls of ``lane`` queued or running."""
        return self._lengths.get(lane, 0)

    def stop(self) -> None:
        """Finish what was submitted, then end the threads; later calls raise instead of waiting forever."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()

    def _next(self) -> tuple[Lane, Any] | None:
        """The next call in turn whose lane is not running; None once stopped with nothing left. Waits while there
        is nothing to take."""
        with self._wake:
            while (taken := self._take()) is None:
                if self._stopped and not self._lanes:
                    return None
                self._wake.wait()
            return taken

    def _take(self) -> tuple[Lane, Any] | None:
        for user, sessions in self._lanes.items():
            for session, calls in sessions.items():
                if (user, session) in self._running:
                    continue
                item = calls.popleft()
                sessions.move_to_end(session)  # this user's next call comes from their next session
                if not calls:
                    del sessions[session]
                self._lanes.move_to_end(user)  # the next call comes from the next user
                if not sessions:
                    del self._lanes[user]
                self._last = (user, session)
                self._running.add(self._last)
                return self._last, item
        return None

    def _run(self) -> None:
        if self._on_start is not None:
            try:
                self._on_start()
            except Exception:  # the thread serves its calls all the same
                log.exception("device thread set-up failed")
        while (taken := self._next()) is not None:
            lane, (future, fn, args) = taken
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the caller, never lost
                    future.set_exception(exc)
            with self._wake:
                self._running.discard(lane)
                self._pending -= 1
                self._lengths[lane] -= 1
                if not self._lengths[lane]:
                    del self._lengths[lane]
                self._wake.notify_all()  # the lane's next call, or a stop, may wait for this one
