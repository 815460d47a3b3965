"""Slicer's main loop without Slicer: a timer callback, with the Python GIL held between callbacks.

In Slicer the main thread keeps the GIL while Qt's event loop waits (PythonQt's thread support is
off), so worker threads run only while the main thread executes Python that releases it. Here the
main thread "waits" in ``usleep`` called through ``ctypes.PyDLL``, which, unlike ``CDLL``, does not
release the GIL: the same effect, measured equal to an embedded-CPython test (facts.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_LIBC = ctypes.PyDLL(ctypes.util.find_library("c"))
QT_WORK_S = 0.010  # Qt's own event processing per timer tick, with the GIL held


def hold_gil(seconds: float) -> None:
    """Sleep without releasing the GIL, as Qt's event loop does inside Slicer."""
    _LIBC.usleep(int(seconds * 1e6))


@dataclass
class LoopRun:
    """How long the loop ran, and how long each callback kept the GUI from processing events."""

    seconds: float = 0.0
    blocks: list[float] = field(default_factory=list)

    @property
    def longest_block(self) -> float:
        return max(self.blocks, default=0.0)


def run_slicer_loop(callback: Callable[[], object], until: Callable[[], bool], interval_s: float,
                    timeout_s: float = 300.0, qt_work_s: float = QT_WORK_S) -> LoopRun:
    """Call ``callback`` like a QTimer with ``interval_s`` until ``until()``: between calls the GIL is held
    for the rest of the interval, and for at least ``qt_work_s`` (Qt's own work, rendering) per tick."""
    run = LoopRun()
    start = time.perf_counter()
    while not until():
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError(f"the emulated Slicer loop did not finish in {timeout_s} s")
        began = time.perf_counter()
        callback()
        took = time.perf_counter() - began
        run.blocks.append(took)
        hold_gil(max(interval_s - took, qt_work_s))
    run.seconds = time.perf_counter() - start
    return run
