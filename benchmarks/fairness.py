"""Device time shared between users: latency per user with one heavy and one light user on one server.

    .venv/bin/python benchmarks/fairness.py --label fair                            # this checkout
    PYTHONPATH=/path/to/old/Backends .venv/bin/python benchmarks/fairness.py --label fifo   # another version

The heavy user (alice) keeps ``--heavy-sessions`` sessions busy with lassos back to back, so that many of her
prompts always wait for the device; the light user (bob) sends one point prompt at a time with a pause between.
Each run adds its row (keyed by ``--label``) to benchmarks/results/fairness.json and rewrites fairness.md: p50 and
p95 latency per user, and bob's p95 in units of alice's median model time per prompt (what one of her prompts
holds the device for). The server is a subprocess of whatever code ``PYTHONPATH`` puts first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Testing"))

from server_processes import our_server  # noqa: E402
from synthetic import disk_crop, mr_like_image  # noqa: E402

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend  # noqa: E402
from nninteractive_slicer.devtools.synthetic_model import write_model  # noqa: E402
from nninteractive_slicer.interface import Lasso, Point  # noqa: E402

ALICE_KEY, BOB_KEY = "alice-benchmark-key-0123", "bob-benchmark-key-012345"
SHAPE = (64, 64, 64)
RESULTS = HERE / "results"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(url: str, heavy_sessions: int, seconds: float, pause_s: float) -> dict[str, Any]:
    image = mr_like_image(SHAPE, seed=7)
    alices = [SlicerServerBackend(url, ALICE_KEY, timeout=600) for _ in range(heavy_sessions)]
    bob = SlicerServerBackend(url, BOB_KEY, timeout=600)
    for backend in (*alices, bob):
        backend.set_image(image)
        backend.prompt(Point((32, 32, 32)))  # warm
    lasso = Lasso(disk_crop((24, 24), 2, filled=True), ((20, 44), (20, 44), (32, 33)))
    latencies: dict[str, list[float]] = {"alice": [], "bob": []}
    model_ms: list[float] = []
    errors = {"alice": 0, "bob": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop(user: str, backend: SlicerServerBackend, prompt: Any, pause: float) -> None:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                result = backend.prompt(prompt)
            except Exception:  # counted; the run goes on
                with lock:
                    errors[user] += 1
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies[user].append(elapsed)
                if user == "alice" and result.backend_ms is not None:
                    model_ms.append(result.backend_ms)
            time.sleep(pause)

    threads = [threading.Thread(target=loop, args=("alice", a, lasso, 0.0)) for a in alices]
    threads.append(threading.Thread(target=loop, args=("bob", bob, Point((40, 40, 40)), pause_s)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for backend in (*alices, bob):
        backend.close()
    alice_unit = statistics.median(model_ms) / 1000 if model_ms else float("nan")
    row: dict[str, Any] = {"heavy_sessions": heavy_sessions, "seconds": seconds, "alice_model_s": alice_unit}
    for user, values in latencies.items():
        row[user] = {"prompts": len(values), "errors": errors[user], "p50_s": percentile(values, 50),
                     "p95_s": percentile(values, 95)}
    row["bob_p95_in_alice_prompts"] = row["bob"]["p95_s"] / alice_unit
    return row


def write_table(results: dict[str, Any]) -> None:
    lines = [f"# Fairness: one heavy and one light user ({results['machine']})", "",
             "alice keeps several sessions of lassos back to back; bob sends one point at a time. Latency is the "
             "client's wall time per prompt (bob's own prompt included: about one unit); a unit is alice's median "
             "model time per prompt.", "",
             "| server code | alice sessions | alice prompts | alice p50 s | alice p95 s | bob prompts | bob p50 s | "
             "bob p95 s | bob p95 in alice prompts | errors |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, row in results["runs"].items():
        a, b = row["alice"], row["bob"]
        lines.append(f"| {label} | {row['heavy_sessions']} | {a['prompts']} | {a['p50_s']:.2f} | {a['p95_s']:.2f} | "
                     f"{b['prompts']} | {b['p50_s']:.2f} | {b['p95_s']:.2f} | {row['bob_p95_in_alice_prompts']:.1f} | "
                     f"{a['errors'] + b['errors']} |")
    (RESULTS / "fairness.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="the row's name, e.g. fair or fifo")
    parser.add_argument("--heavy-sessions", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pause", type=float, default=0.5, help="bob's pause between prompts (s)")
    args = parser.parse_args()
    model_dir = write_model(Path(tempfile.mkdtemp()) / "tiny", "tiny", seed=0)
    extra = ["--api-key", f"bob:{BOB_KEY}", "--max-sessions", str(args.heavy_sessions + 2)]
    with our_server(model_dir, "alice", ALICE_KEY, *extra) as server:
        row = run(server.url, args.heavy_sessions, args.seconds, args.pause)
    row["server_code"] = os.environ.get("PYTHONPATH", "installed package")
    path = RESULTS / "fairness.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    results["machine"] = f"{os.cpu_count()} cores, cpu, model tiny"
    results["runs"][args.label] = row
    path.write_text(json.dumps(results, indent=2) + "\n")
    write_table(results)
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
