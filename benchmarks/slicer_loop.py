"""A prompt's wall time in plain Python against inside Slicer's main loop, for the local and remote backends.

    .venv/bin/python benchmarks/slicer_loop.py                 # 256x256x130, 3 pairs per backend, tiny model
    .venv/bin/python benchmarks/slicer_loop.py --old-poll      # also one prompt under the old done()-only poll

Slicer's main thread holds the GIL between timer callbacks; Testing/slicer_loop.py emulates that
(usleep through ctypes.PyDLL). "Plain" runs prepare, backend call and segment write on the calling
thread; "Slicer loop" enqueues the same prompt, on a new segment too, in SlicerNNInteractiveLogic and
lets the emulated loop call its poll() until the result is in the segment. The two run back to back
in pairs, so a loaded machine slows both alike; the ratio is the median of the pairs' ratios. The
server is a subprocess, as for a Slicer user. Results: benchmarks/results/slicer_loop.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Testing"))

from server_processes import our_server  # noqa: E402
from slicer_loop import run_slicer_loop  # noqa: E402
from slicer_scene import make_scene  # noqa: E402
from synthetic import blob_centre, mr_like_image  # noqa: E402

from nninteractive_slicer.backends.local import LocalBackend  # noqa: E402
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend  # noqa: E402
from nninteractive_slicer.core.synthetic_model import write_model  # noqa: E402
from nninteractive_slicer.interface import Backend  # noqa: E402
from SlicerNNInteractiveLib import PromptSession, point_prompt  # noqa: E402
from SlicerNNInteractiveLib.logic import TIMER_MS, QueuedPrompt, SlicerNNInteractiveLogic  # noqa: E402

API_KEY = "benchmark-key-0123456789"
SPACING = np.diag([0.8, 0.8, 2.5, 1.0])


class Bench:
    """One scene and Logic around a backend; times point prompts plainly and under the emulated loop."""

    def __init__(self, backend: Backend, shape: tuple[int, int, int]) -> None:
        s = make_scene()
        volume = s.volume(mr_like_image(shape, seed=1), SPACING)
        editor = s.editor_node(volume, s.segmentation(volume))
        self.session = PromptSession(s.scene, backend, editor, s.app_logic)
        self.backend, self.shape = backend, shape
        self.session.submit(self.point(0))  # upload and warm-up

    def point(self, index: int):
        """Pair ``index``'s prompt: a point near the blob's centre, the same for both arms of the pair."""
        kji = np.array(blob_centre(self.shape)) + [0, index % 5 - 2, index % 7 - 3]
        world = (SPACING @ np.r_[kji[::-1].astype(float), 1.0])[:3]
        return lambda g: point_prompt(world, g, True)

    def plain(self, index: int) -> float:
        self.session.new_segment()  # each arm starts a new object: the same work in both
        began = time.perf_counter()
        self.session.submit(self.point(index))
        return time.perf_counter() - began

    def looped(self, index: int, poll_wait: float | None = None,
               interval_s: float = TIMER_MS / 1000) -> tuple[float, float, float]:
        """(wall time, longest GUI block while waiting, the block of the tick that wrote the result)."""
        options = {} if poll_wait is None else {"poll_wait": poll_wait}
        logic = SlicerNNInteractiveLogic(self.session, **options)  # the session's backend, already up to date
        finished: list[int] = []
        blocks: list[float] = []
        write: list[float] = []

        def tick() -> None:
            began = time.perf_counter()
            logic.poll()
            (write if finished else blocks).append(time.perf_counter() - began)

        self.session.new_segment()
        began = time.perf_counter()
        logic.enqueue(QueuedPrompt(self.point(index), lambda: finished.append(1)))
        run_slicer_loop(tick, lambda: bool(finished), interval_s, timeout_s=1800)
        return time.perf_counter() - began, max(blocks, default=0.0), max(write, default=0.0)


def measure(name: str, bench: Bench, pairs: int, old_poll: bool) -> dict:
    plain, looped, blocks, writes = [], [], [], []
    for index in range(1, pairs + 1):
        plain.append(bench.plain(index))
        seconds, block, write = bench.looped(index)
        looped.append(seconds)
        blocks.append(block)
        writes.append(write)
        print(f"  {name}: plain {plain[-1]:.2f} s, Slicer loop {looped[-1]:.2f} s", flush=True)
    row = {"backend": name, "plain_s": statistics.median(plain), "loop_s": statistics.median(looped),
           "ratio": statistics.median(loop / direct for loop, direct in zip(looped, plain)),
           "longest_wait_ms": 1000 * max(blocks),
           "result_write_ms": 1000 * statistics.median(writes),
           "plain_samples": plain, "loop_samples": looped}
    if old_poll:  # the poll before this change: every 50 ms, done() only
        row["old_poll_s"] = bench.looped(1, poll_wait=0.0, interval_s=0.05)[0]
        row["old_ratio"] = row["old_poll_s"] / plain[0]  # the same prompt as the first pair
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="130,256,256", help="k,j,i voxels (default 256x256x130)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--old-poll", action="store_true", help="also one prompt under the old done()-only poll")
    parser.add_argument("--out", default="slicer_loop")
    args = parser.parse_args(argv)
    shape = tuple(int(n) for n in args.shape.split(","))
    model_dir = write_model(Path(tempfile.mkdtemp()) / "tiny", "tiny", seed=0)
    rows = []
    print("local", flush=True)
    with LocalBackend(model_dir=model_dir, device="cpu", torch_threads=2) as backend:
        rows.append(measure("local", Bench(backend, shape), args.pairs, args.old_poll))
    print("remote", flush=True)
    with our_server(model_dir, "bench", API_KEY) as server, \
            SlicerServerBackend(server.url, API_KEY, timeout=600) as backend:
        rows.append(measure("remote", Bench(backend, shape), args.pairs, args.old_poll))
    results = {"shape": list(shape), "pairs": args.pairs, "timer_ms": TIMER_MS, "rows": rows}
    out = HERE / "results"
    (out / f"{args.out}.json").write_text(json.dumps(results, indent=2) + "\n")
    size = "x".join(str(n) for n in reversed(shape))
    lines = [f"# Prompt wall time: plain Python vs Slicer's main loop (emulated), {size}, tiny model, CPU", "",
             f"Medians of {args.pairs} back-to-back pairs (the same point prompt on a new segment in both); "
             f"ratio: median of the pairs' ratios. The loop's timer fires every {TIMER_MS} ms "
             "and Qt holds the GIL for at least 10 ms per tick.", "",
             "| backend | plain (s) | Slicer loop (s) | ratio | longest GUI block while waiting (ms) "
             "| tick writing the result (ms) |"
             + (" old 50 ms done()-only poll (s) | old ratio |" if args.old_poll else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if args.old_poll else "")]
    for row in rows:
        line = (f"| {row['backend']} | {row['plain_s']:.2f} | {row['loop_s']:.2f} | {row['ratio']:.2f} | "
                f"{row['longest_wait_ms']:.0f} | {row['result_write_ms']:.0f} |")
        if args.old_poll:
            line += f" {row['old_poll_s']:.2f} | {row['old_ratio']:.1f} |"
        lines.append(line)
    (out / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
