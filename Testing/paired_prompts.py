"""The same point prompt timed two ways, back to back: plainly on the calling thread, and through the Logic
under the emulated Slicer loop (:mod:`slicer_loop`). Shared by the event-loop test and its benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from slicer_loop import QT_WORK_S, run_slicer_loop
from slicer_scene import make_scene
from synthetic import blob_centre, mr_like_image

from nninteractive_slicer.interface import Backend
from SlicerNNInteractiveLib import PromptPipeline, point_prompt
from SlicerNNInteractiveLib.logic import TIMER_MS, QueuedPrompt, SlicerNNInteractiveLogic


@dataclass
class LoopedPrompt:
    """A prompt under the emulated loop: wall time from enqueue to the result in the segment, how long each
    tick kept the GUI while waiting and while writing the result, and the Logic's events."""

    seconds: float
    waits: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)
    events: list = field(default_factory=list)


class PairedPrompts:
    """A volume, a segment and a PromptPipeline around one backend (the image is uploaded and the model warm)."""

    def __init__(self, backend: Backend, shape: tuple[int, int, int], ijk_to_ras: np.ndarray) -> None:
        s = make_scene()
        volume = s.volume(mr_like_image(shape, seed=1), ijk_to_ras)
        editor = s.editor_node(volume, s.segmentation(volume))
        self.pipeline = PromptPipeline(s.scene, backend, editor, s.app_logic)
        self.shape, self.ijk_to_ras = shape, ijk_to_ras
        self.pipeline.submit(self.point(0))

    def point(self, index: int) -> Callable:
        """Pair ``index``'s prompt: a point near the blob's centre, the same for both arms of a pair."""
        kji = np.array(blob_centre(self.shape)) + [0, index % 5 - 2, index % 7 - 3]
        world = (self.ijk_to_ras @ np.r_[kji[::-1].astype(float), 1.0])[:3]
        return lambda g: point_prompt(world, g, True)

    def plain(self, index: int) -> float:
        """Prepare, run and write on this thread, on a new segment (each arm does the same work)."""
        self.pipeline.new_segment()
        began = time.perf_counter()
        self.pipeline.submit(self.point(index))
        return time.perf_counter() - began

    def looped(self, index: int, logic: SlicerNNInteractiveLogic, interval_s: float = TIMER_MS / 1000,
               timeout_s: float = 600, qt_work_s: float = QT_WORK_S) -> LoopedPrompt:
        """The same prompt enqueued in ``logic`` (over this pipeline), polled by the emulated loop until written."""
        finished: list[int] = []
        run = LoopedPrompt(0.0)

        def tick() -> None:
            began = time.perf_counter()
            run.events.extend(logic.poll())
            (run.writes if finished else run.waits).append(time.perf_counter() - began)

        self.pipeline.new_segment()
        began = time.perf_counter()
        logic.enqueue(QueuedPrompt(self.point(index), lambda: finished.append(1)))
        run_slicer_loop(tick, lambda: bool(finished), interval_s, timeout_s=timeout_s, qt_work_s=qt_work_s)
        run.seconds = time.perf_counter() - began
        return run
