"""The emulated Slicer host is honest: an idle Slicer (timer stopped) lets no other thread run, a timer callback
that releases the GIL does, and per-call cost is measured."""

from __future__ import annotations

import threading
import time

import numpy as np
from slicer_host import SlicerHost


def test_no_other_thread_runs_while_slicer_idles_with_its_timer_stopped():
    steps: list[int] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            time.sleep(0.001)
            steps.append(1)

    threading.Thread(target=worker, daemon=True).start()
    time.sleep(0.05)
    host = SlicerHost(qt_ms=10)
    timer = host.timer(lambda: time.sleep(0.02), 500)  # a tick that lets others run for 20 ms
    before = len(steps)
    host.idle(1.0)
    idle_steps = len(steps) - before
    timer.start()
    before = len(steps)
    host.idle(1.0)
    ticking_steps = len(steps) - before
    stop.set()
    assert idle_steps <= 2, idle_steps
    assert ticking_steps >= 5, ticking_steps
    assert 2 <= len(host.blocks) <= 4  # a tick every 500 ms


def test_measure_gives_main_thread_time_and_peak_memory():
    result, cost = SlicerHost.measure(lambda: int(np.ones(8_000_000, np.uint8).sum()))
    assert result == 8_000_000
    assert cost.peak_bytes >= 8_000_000 and cost.seconds > 0
