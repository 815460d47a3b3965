"""Undo snapshots as background work, a moment after each step.

A snapshot streams the whole session state through memory (tens of milliseconds at 256x256x130). Taken
at once it competes with what the user waits for right then: the server sending the reply, the module
writing the segment and Slicer rendering it. So a step only marks its engine unsettled
(:meth:`.engine.ModelEngine.settle`), and this one thread snapshots it :data:`DELAY_S` later, at a
lower CPU priority. Correctness never depends on the timing: every later call of the engine settles
first, so a prompt that comes sooner waits for its predecessor's snapshot.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from typing import Protocol

log = logging.getLogger("nninteractive_slicer.snapshots")

DELAY_S = 0.2  # the result is on screen by then; users rarely prompt again sooner


class Settles(Protocol):
    def settle(self) -> None: ...


class SnapshotScheduler:
    """One daemon thread that runs ``engine.settle()`` for each scheduled engine, ``delay_s`` after scheduling."""

    def __init__(self, delay_s: float = DELAY_S, name: str = "nninteractive-undo-snapshots") -> None:
        self.delay_s = delay_s
        self._due: list[tuple[float, int, Settles]] = []
        self._order = itertools.count()  # ties: first scheduled, first settled
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def schedule(self, engine: Settles) -> None:
        with self._wake:
            heapq.heappush(self._due, (time.monotonic() + self.delay_s, next(self._order), engine))
            self._wake.notify()

    def stop(self) -> None:
        """Drop what is still due (its engines settle on their next call, or never need to) and end the thread."""
        with self._wake:
            self._stopped = True
            self._due.clear()
            self._wake.notify()

    def _run(self) -> None:
        _lower_priority()
        while True:
            with self._wake:
                while not self._stopped and (not self._due or self._due[0][0] > time.monotonic()):
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._stopped:
                    return
                _, _, engine = heapq.heappop(self._due)
            try:
                engine.settle()
            except Exception:  # settle keeps its own failures; anything else must not end this thread
                log.exception("undo snapshot failed")


def _lower_priority() -> None:
    """Nice this thread by 10 where threads are scheduled apart (Linux); elsewhere nothing changes."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass
