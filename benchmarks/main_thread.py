"""Main-thread time per prompt at CT size (300x512x512 int16), with segment histories recorded and autosaved.

    .venv/bin/python benchmarks/main_thread.py              # 40 prompts, autosave after every step
    .venv/bin/python benchmarks/main_thread.py --prompts 10 # quicker

The GUI freezes for as long as the Logic's main-thread half of a prompt runs: prepare (read the scene)
and apply (write the changed box through the Segment Editor logic, store the history's text, autosave).
Those two calls are timed around SlicerNNInteractiveLogic's own pipeline while poll() drives it, with a
backend that answers at once (InstantBackend, an organ-sized ball per point, the points scattered over
one object as when a user refines it), so only the client side is measured. The image is sent first,
as when the user selects the volume; one hand edit in the middle makes the next prompt send the whole
segment (reported on its own, not in the percentiles).

Side by side, each step's history work is repeated on the main thread (the digest of the whole mask
and the history's text): what the main thread paid per prompt when it recorded, as before issue 20 #5.
Results: benchmarks/results/main_thread.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Testing"))

from slicer_scene import InstantBackend, make_scene  # noqa: E402

from nninteractive_slicer import history as history_io  # noqa: E402
from nninteractive_slicer.interface import Point  # noqa: E402
from SlicerNNInteractiveLib.geometry import VolumeGeometry  # noqa: E402
from SlicerNNInteractiveLib.history_store import HistoryAutosave  # noqa: E402
from SlicerNNInteractiveLib.logic import QueuedPrompt, SlicerNNInteractiveLogic  # noqa: E402
from SlicerNNInteractiveLib.segments import index_to_segmentation  # noqa: E402

SHAPE = (300, 512, 512)
RADIUS = 30  # voxels: about 110k voxels per answer, an organ-sized change
OBJECT, SPREAD = (150, 256, 256), 20  # every prompt of one segment lands on one object (a liver, not the body)
RESULTS = HERE / "results"


class EditorTimer:
    """The writer's Segment Editor logic, its calls' CPU time noted (Slicer's own share of a prompt)."""

    def __init__(self, logic, spent: list[float]) -> None:
        self._logic, self._spent = logic, spent

    def __getattr__(self, name):
        value = getattr(self._logic, name)
        if name != "ModifySegmentByLabelmap":
            return value

        def call(*args):
            cpu = time.thread_time()
            try:
                return value(*args)
            finally:
                self._spent.append(time.thread_time() - cpu)
        return call


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run(prompts: int, folder: Path) -> dict:
    s = make_scene()
    rng = np.random.default_rng(3)
    volume = s.volume(rng.integers(-1000, 2000, SHAPE, dtype=np.int16))
    segmentation = s.segmentation(volume)
    editor = s.editor_node(volume, segmentation)
    logic = SlicerNNInteractiveLogic()
    logic.autosave = HistoryAutosave(folder, every=1)
    logic.use_scene(s.scene, editor, s.app_logic)
    logic.use_backend(InstantBackend(RADIUS))
    pipeline = logic.pipeline
    assert pipeline is not None
    main_s: list[float] = []
    cpu_s: list[float] = []

    def timed(method):
        def call(*args):
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return method(*args)
            finally:
                main_s.append(time.perf_counter() - started)
                cpu_s.append(time.thread_time() - cpu)
        return call

    pipeline.prepare, pipeline.apply = timed(pipeline.prepare), timed(pipeline.apply)  # type: ignore[method-assign]
    editor_cpu_s: list[float] = []  # of that, Slicer's own Segment Editor write
    pipeline.writer.logic = EditorTimer(pipeline.writer.logic, editor_cpu_s)

    def step(item) -> tuple[float, float]:
        main_s.clear()
        cpu_s.clear()
        editor_cpu_s.clear()
        logic.enqueue(QueuedPrompt(item))
        while logic.busy:
            logic.poll()
        return sum(main_s), sum(cpu_s)

    logic.image_chosen(volume)
    step_image = step(lambda g: Point(OBJECT, True))  # the image and first prompt: not counted
    rows: list[tuple[float, float]] = []
    old: list[float] = []
    editor_ms: list[float] = []
    whole = np.zeros(SHAPE, np.uint8)
    hand_edit = (0.0, 0.0)
    centres = np.array(OBJECT) + rng.integers(-SPREAD, SPREAD + 1, size=(prompts, 3))  # refining one object
    for index, centre in enumerate(centres):
        if index == prompts // 2:  # a hand edit: the next prompt sends the whole segment
            g = VolumeGeometry.from_volume_node(volume)
            index_to_seg = index_to_segmentation(g, segmentation)
            box = tuple((c - 5, c + 5) for c in OBJECT)  # a touch-up on the object
            pipeline.writer.write(segmentation, editor.GetSelectedSegmentID(), index_to_seg, box,
                                  np.ones((10, 10, 10), np.uint8))
            hand_edit = step(Point(tuple(int(c) for c in centre), True))
            continue
        rows.append(step(Point(tuple(int(c) for c in centre), True)))
        editor_ms.append(1000 * sum(editor_cpu_s))
        history = pipeline.catch_up.history(segmentation.GetID(), editor.GetSelectedSegmentID())  # type: ignore[attr-defined]
        cpu = time.thread_time()  # the same history work, on the main thread as before
        history_io.mask_digest(whole)  # the object's whole mask, digested after every step
        history_io.dumps(history)
        old.append(time.thread_time() - cpu + rows[-1][1])
    logic.close()
    wall = [1000 * w for w, _ in rows]
    cpu = [1000 * c for _, c in rows]
    old_ms = [1000 * v for v in old]
    return {
        "shape": list(SHAPE), "dtype": "int16", "prompts": len(rows), "answer_radius_voxels": RADIUS,
        "autosave_every": 1, "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
        "cpu_median_ms": statistics.median(cpu), "cpu_p95_ms": percentile(cpu, 95), "cpu_max_ms": max(cpu),
        "wall_median_ms": statistics.median(wall), "wall_p95_ms": percentile(wall, 95), "wall_max_ms": max(wall),
        "after_hand_edit_cpu_ms": 1000 * hand_edit[1], "first_prompt_with_image_cpu_ms": 1000 * step_image[1],
        "segment_editor_cpu_median_ms": statistics.median(editor_ms),
        "recording_on_main_cpu_median_ms": statistics.median(old_ms),
        "recording_on_main_cpu_p95_ms": percentile(old_ms, 95),
        "cpu_samples_ms": cpu, "wall_samples_ms": wall,
    }


def write(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "main_thread.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Main-thread time per prompt at 300x512x512 int16 (histories recorded, autosave every step)", "",
        "Written by `benchmarks/main_thread.py`: prepare + apply of SlicerNNInteractiveLogic's pipeline, timed on the "
        "main thread while poll() drives it; a backend answering at once with an organ-sized ball "
        f"(radius {result['answer_radius_voxels']} voxels). 2 shared CPU cores, no GPU.", "",
        "Main-thread time is its CPU time (`time.thread_time`): while prepare and apply run the worker is idle, so on "
        "an unloaded machine it is the GUI's wall time; the wall time measured here on shared cores (1-minute load "
        f"average {result['load_average_1min']:.0f} on {result['cpus']} cores) is listed beside it.", "",
        "| per prompt | median ms | 95th percentile ms | max ms |",
        "|---|---|---|---|",
        f"| main thread, recording on the worker thread (now) | {result['cpu_median_ms']:.1f} | "
        f"{result['cpu_p95_ms']:.1f} | {result['cpu_max_ms']:.1f} |",
        f"| the same, wall time on the loaded machine | {result['wall_median_ms']:.1f} | {result['wall_p95_ms']:.1f} | "
        f"{result['wall_max_ms']:.1f} |",
        f"| of which Slicer's Segment Editor writing the box (ModifySegmentByLabelmap) | "
        f"{result['segment_editor_cpu_median_ms']:.1f} | | |",
        f"| main thread with the history's digest and text made there too (as before) | "
        f"{result['recording_on_main_cpu_median_ms']:.1f} | {result['recording_on_main_cpu_p95_ms']:.1f} | |",
        "",
        f"Prompts measured: {result['prompts']}. Main thread for the prompt after a hand edit (the whole segment is "
        f"read and sent): {result['after_hand_edit_cpu_ms']:.0f} ms. For the first prompt, which copies the image for "
        f"the upload: {result['first_prompt_with_image_cpu_ms']:.0f} ms.", "",
    ]
    (RESULTS / "main_thread.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = run(args.prompts, Path(folder))
    write(result)
    print((RESULTS / "main_thread.md").read_text())


if __name__ == "__main__":
    main()
