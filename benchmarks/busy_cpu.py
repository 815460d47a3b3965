"""Concurrent sessions only, on a quiet CPU and with a CPU load beside both servers: this project's server
against the official one, the rows ``run.py`` adds to the full benchmark, on their own.

    .venv/bin/python benchmarks/busy_cpu.py                          # 4 and 8 sessions, 3 alternating repeats
    .venv/bin/python benchmarks/busy_cpu.py --one-device-thread      # and ours as before (one device thread)

The load is ``--load`` busy-loop processes (default: one per core) that the benchmark starts and stops
itself, so both servers meet the same load; the servers alternate within each repeat. Results:
benchmarks/results/<out>.json and .md (the concurrency table and the targets of issue 23, section 3).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Testing"))

import report  # noqa: E402
from cpu_load import cpu_load  # noqa: E402
from harness import ONE_DEVICE_THREAD, progress, targets  # noqa: E402
from run import concurrency_rows, machine  # noqa: E402

from nninteractive_slicer.devtools.synthetic_model import write_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats per load (medians need 3)")
    parser.add_argument("--prompts", type=int, default=5, help="point prompts per session")
    parser.add_argument("--loads", nargs="+", default=["quiet", "busy"], choices=["quiet", "busy"])
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2, help="busy-loop processes of the CPU load")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads of both servers")
    parser.add_argument("--one-device-thread", action="store_true",
                        help="also our server with --device-threads 1 (the CPU default before it was 2)")
    parser.add_argument("--note", default="", help="what else ran on the machine, for the report")
    parser.add_argument("--out", default="busy-cpu", help="file stem under benchmarks/results/")
    args = parser.parse_args(argv)
    results: dict = {"machine": machine("cpu"), "note": args.note, "concurrency": [], "cpu_load_processes": args.load}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        model_dir = write_model(Path(tmp) / "tiny", "tiny")
        kinds = ["server", "official"] + ([ONE_DEVICE_THREAD] if args.one_device_thread else [])
        with targets(kinds, model_dir, "cpu", args.threads) as servers:
            for load in args.loads:
                with cpu_load(args.load) if load == "busy" else contextlib.nullcontext():
                    results["concurrency"] += concurrency_rows(servers, args.sessions, args.repeats, args.prompts,
                                                               load)
    results["seconds"] = round(time.perf_counter() - started, 1)
    out = HERE / "results"
    (out / f"{args.out}.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [f"# Concurrent sessions, quiet and busy CPU ({results['machine']})", "", args.note,
             f"{args.prompts} point prompts per session on S, tiny synthetic model, {args.threads} torch threads "
             f"per server (ours with its CPU default of 2 device threads: prompts of two sessions run at once, "
             f"each with all of them); {results['seconds']:.0f} s."]
    (out / f"{args.out}.md").write_text("\n".join(lines + report.concurrency_lines(results)) + "\n")
    progress(f"wrote {out / args.out}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
