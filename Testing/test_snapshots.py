"""The background snapshot thread: each scheduled engine settles once, after the delay, in order; a failing
engine does not stop the others; stop drops what is still due."""

from __future__ import annotations

import threading
import time

from nninteractive_slicer.engine.snapshots import SnapshotScheduler


class Recorder:
    def __init__(self, name: str, log: list[tuple[str, float]], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail
        self.done = threading.Event()

    def settle(self) -> None:
        self.log.append((self.name, time.monotonic()))
        self.done.set()
        if self.fail:
            raise RuntimeError("snapshot failed")


def test_engines_settle_once_after_the_delay_in_order_and_a_failure_stops_nothing():
    log: list[tuple[str, float]] = []
    scheduler = SnapshotScheduler(delay_s=0.2)
    try:
        first, failing, last = Recorder("first", log), Recorder("failing", log, fail=True), Recorder("last", log)
        scheduled = time.monotonic()
        for engine in (first, failing, last):
            scheduler.schedule(engine)
        assert last.done.wait(30)
        assert [name for name, _ in log] == ["first", "failing", "last"]
        assert log[0][1] - scheduled >= 0.2
    finally:
        scheduler.stop()


def test_stop_drops_what_is_due_and_ends_the_thread():
    log: list[tuple[str, float]] = []
    scheduler = SnapshotScheduler(delay_s=30)
    scheduler.schedule(Recorder("never", log))
    scheduler.stop()
    scheduler._thread.join(10)
    assert not scheduler._thread.is_alive() and log == []
