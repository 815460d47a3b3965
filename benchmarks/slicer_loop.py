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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Testing"))

from paired_prompts import PairedPrompts  # noqa: E402
from server_processes import our_server  # noqa: E402

from nninteractive_slicer.backends.local import LocalBackend  # noqa: E402
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend  # noqa: E402
from nninteractive_slicer.devtools.synthetic_model import write_model  # noqa: E402
from SlicerNNInteractiveLib.logic import TIMER_MS, SlicerNNInteractiveLogic  # noqa: E402

API_KEY = "benchmark-key-0123456789"
SPACING = np.diag([0.8, 0.8, 2.5, 1.0])


def measure(name: str, bench: PairedPrompts, pairs: int, old_poll: bool, qt_ms: float = 10.0) -> dict:
    plain, looped, blocks, writes = [], [], [], []
    for index in range(1, pairs + 1):
        plain.append(bench.plain(index))
        run = bench.looped(index, SlicerNNInteractiveLogic(bench.pipeline), timeout_s=1800, qt_work_s=qt_ms / 1000)
        looped.append(run.seconds)
        blocks.append(max(run.waits, default=0.0))
        writes.append(max(run.writes, default=0.0))
        print(f"  {name}: plain {plain[-1]:.2f} s, Slicer loop {looped[-1]:.2f} s", flush=True)
    row = {"backend": name, "qt_ms": qt_ms, "plain_s": statistics.median(plain), "loop_s": statistics.median(looped),
           "ratio": statistics.median(loop / direct for loop, direct in zip(looped, plain)),
           "longest_wait_ms": 1000 * max(blocks),
           "result_write_ms": 1000 * statistics.median(writes),
           "plain_samples": plain, "loop_samples": looped}
    if old_poll:  # the poll before this change: every 50 ms, done() only
        old = SlicerNNInteractiveLogic(bench.pipeline, poll_wait=0.0)
        row["old_poll_s"] = bench.looped(1, old, interval_s=0.05, timeout_s=1800).seconds
        row["old_ratio"] = row["old_poll_s"] / plain[0]  # the same prompt as the first pair
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="130,256,256", help="k,j,i voxels (default 256x256x130)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--old-poll", action="store_true", help="also one prompt under the old done()-only poll")
    parser.add_argument("--out", default="slicer_loop")
    parser.add_argument("--qt-ms", default="10,40", help="Qt's own work per tick with the GIL held, in ms "
                        "(10: idle Qt; 40: rendering), one row each")
    parser.add_argument("--local-only", action="store_true", help="skip the remote backend")
    args = parser.parse_args(argv)
    shape = tuple(int(n) for n in args.shape.split(","))
    model_dir = write_model(Path(tempfile.mkdtemp()) / "tiny", "tiny", seed=0)
    rows = []
    ticks = [float(ms) for ms in args.qt_ms.split(",")]
    print("local", flush=True)
    with LocalBackend(model_dir=model_dir, device="cpu", torch_threads=2) as backend:
        bench = PairedPrompts(backend, shape, SPACING)
        rows += [measure("local", bench, args.pairs, args.old_poll, qt_ms) for qt_ms in ticks]
    if not args.local_only:
        print("remote", flush=True)
        with our_server(model_dir, "bench", API_KEY) as server, \
                SlicerServerBackend(server.url, API_KEY, timeout=600) as backend:
            bench = PairedPrompts(backend, shape, SPACING)
            rows += [measure("remote", bench, args.pairs, args.old_poll, qt_ms) for qt_ms in ticks]
    results = {"shape": list(shape), "pairs": args.pairs, "timer_ms": TIMER_MS, "rows": rows}
    out = HERE / "results"
    (out / f"{args.out}.json").write_text(json.dumps(results, indent=2) + "\n")
    size = "x".join(str(n) for n in reversed(shape))
    lines = [f"# Prompt wall time: plain Python vs Slicer's main loop (emulated), {size}, tiny model, CPU", "",
             f"Medians of {args.pairs} back-to-back pairs (the same point prompt on a new segment in both); "
             f"ratio: median of the pairs' ratios. The loop's timer fires every {TIMER_MS} ms "
             "and Qt holds the GIL for the row's ms per tick (10: idle Qt, 40: rendering).", "",
             "| backend | Qt per tick (ms) | plain (s) | Slicer loop (s) | ratio "
             "| longest GUI block while waiting (ms) | tick writing the result (ms) |"
             + (" old 50 ms done()-only poll (s) | old ratio |" if args.old_poll else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if args.old_poll else "")]
    for row in rows:
        line = (f"| {row['backend']} | {row['qt_ms']:.0f} | {row['plain_s']:.2f} | {row['loop_s']:.2f} | "
                f"{row['ratio']:.2f} | {row['longest_wait_ms']:.0f} | {row['result_write_ms']:.0f} |")
        if args.old_poll:
            line += f" {row['old_poll_s']:.2f} | {row['old_ratio']:.1f} |"
        lines.append(line)
    (out / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
