"""3D Slicer's application around the module, emulated for tests: what the module meets in a live Slicer.

- **The main thread and Qt.** Slicer's main thread holds the GIL while Qt idles or renders (facts.md), so
  other threads run only while Python on the main thread releases it. :class:`SlicerHost` runs a loop that
  holds the GIL (:func:`slicer_loop.hold_gil`) for ``qt_ms`` of Qt work per tick and while it waits for the
  next tick, and calls the widget's timer callback like a QTimer; a stopped timer is an idle Slicer.
- **Quit.** The widget's ``cleanup()``, then ``Py_Finalize()`` under whatever daemon threads still run:
  :func:`quit_in_subprocess` runs a script that ends the same way in a fresh interpreter.
- **The factory ctest.** ``slicer.testing.runUnitTest`` loads the module's tests with unittest's loader:
  :func:`load_like_rununittest`.
- **Cost on the main thread.** :meth:`SlicerHost.measure` gives the wall time and the peak of Python-traced
  memory of one main-thread call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
import types
import unittest
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slicer_loop import hold_gil

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Timer:
    """The widget's QTimer: ``start()``, ``stop()``, ``setInterval()``, ``isActive()`` and the callback it calls."""

    callback: Callable[[], object]
    interval_ms: float = 10.0
    active: bool = False

    def start(self, interval_ms: float | None = None) -> None:
        if interval_ms is not None:
            self.interval_ms = interval_ms
        self.active = True

    def stop(self) -> None:
        self.active = False

    def setInterval(self, interval_ms: float) -> None:  # noqa: N802 (Qt's name)
        self.interval_ms = interval_ms

    def isActive(self) -> bool:  # noqa: N802 (Qt's name)
        return self.active


@dataclass(frozen=True)
class CallCost:
    seconds: float
    peak_bytes: int


@dataclass
class SlicerHost:
    """Slicer's main loop: every tick Qt holds the GIL for ``qt_ms``, then the timer's callback runs if due.

    Between ticks the GIL stays held, as in Slicer; nothing else on the main thread releases it. ``blocks``
    records how long each callback kept the GUI.
    """

    qt_ms: float = 10.0
    timers: list[Timer] = field(default_factory=list)
    blocks: list[float] = field(default_factory=list)

    def timer(self, callback: Callable[[], object], interval_ms: float = 10.0) -> Timer:
        timer = Timer(callback, interval_ms)
        self.timers.append(timer)
        return timer

    def run(self, seconds: float | None = None, until: Callable[[], bool] = lambda: False,
            timeout_s: float = 300.0) -> float:
        """Run the loop for ``seconds``, or until ``until()``; returns the wall time it ran."""
        start = time.perf_counter()
        due = {id(timer): start for timer in self.timers}
        while not until():
            now = time.perf_counter()
            if seconds is not None and now - start >= seconds:
                break
            if seconds is None and now - start > timeout_s:
                raise TimeoutError(f"the emulated Slicer did not finish in {timeout_s} s")
            for timer in list(self.timers):
                if timer.active and now >= due.get(id(timer), now):
                    began = time.perf_counter()
                    timer.callback()
                    self.blocks.append(time.perf_counter() - began)
                    due[id(timer)] = began + timer.interval_ms / 1000
            # Qt's own work this tick, then its wait for the next timer event: one stretch with the GIL held
            # and no Python in between (Python code here would let other threads run, as Slicer's Qt does not).
            now = time.perf_counter()
            active = [due.setdefault(id(t), now) for t in self.timers if t.active]
            wake = min(active) if active else (start + seconds if seconds is not None else now + 0.05)
            if seconds is not None:
                wake = min(wake, start + seconds)
            hold_gil(max(self.qt_ms / 1000, wake - now))
        return time.perf_counter() - start

    def idle(self, seconds: float) -> None:
        """The user looks at the image: Qt waits for events with the GIL held, timers fire if active."""
        self.run(seconds=seconds)

    @staticmethod
    def measure(call: Callable[[], Any]) -> tuple[Any, CallCost]:
        """Run ``call`` on the main thread: its result, wall time and peak Python-traced memory."""
        started_tracing = not tracemalloc.is_tracing()
        if started_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        began = time.perf_counter()
        try:
            result = call()
        finally:
            seconds = time.perf_counter() - began
            peak = tracemalloc.get_traced_memory()[1] - base
            if started_tracing:
                tracemalloc.stop()
        return result, CallCost(seconds, max(0, peak))


def module_path_env() -> dict[str, str]:
    """The environment a subprocess needs to import the module's Lib, its backends and the test helpers."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(REPO / p) for p in ("Backends", "Testing", "SlicerNNInteractive"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def quit_in_subprocess(script: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter: it ends as Slicer quits (it calls the widget's cleanup, then
    returns, and the interpreter finalises under the daemon threads that still run)."""
    return subprocess.run([sys.executable, "-c", script], env=module_path_env(), capture_output=True, text=True,
                          timeout=timeout_s, stdin=subprocess.DEVNULL, check=False)


def scripted_loadable_module() -> types.ModuleType:
    """``slicer.ScriptedLoadableModule`` as far as a test class uses it: ScriptedLoadableModuleTest is a
    unittest.TestCase with ``runTest`` (Reload and Test) and ``delayDisplay``, as in Slicer."""
    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message: str, msec: int = 0) -> None:  # noqa: N802 (Slicer's name)
            print(message)

        def runTest(self) -> None:  # noqa: N802 (Slicer's name)
            pass

    module.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest  # type: ignore[attr-defined]
    return module


def load_like_rununittest(name: str) -> unittest.TestSuite:
    """What ``slicer.testing.runUnitTest`` (the factory ctest) does: ``TestLoader().loadTestsFromName``; every
    ``test*`` method is then called with no argument."""
    sys.modules.setdefault("slicer.ScriptedLoadableModule", scripted_loadable_module())
    return unittest.TestLoader().loadTestsFromName(name)


def module_timer(host: SlicerHost, logic: Any, events: list | None = None) -> Timer:
    """The widget's timer on ``host``: each tick calls ``logic.poll()`` and then, as the widget does, keeps the
    timer at the interval the Logic asks for, or stops it. ``events`` collects what poll() returned."""
    collected = events if events is not None else []

    def tick() -> None:
        collected.extend(logic.poll())
        interval = logic.timer_ms
        timer.stop() if interval is None else timer.setInterval(interval)

    timer = host.timer(tick)
    return timer
