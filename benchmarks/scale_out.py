"""Scale-out on Ray Serve: prompts/s and latency of 8 concurrent sessions on 1, 2 and 4 replicas, the proxy's
added latency per prompt against the direct server, and how evenly the consistent hash places sessions.

    .venv/bin/python benchmarks/scale_out.py --quick     # 1 and 2 replicas, 5 prompts per session
    .venv/bin/python benchmarks/scale_out.py             # 1, 2 and 4 replicas, 10 prompts per session
    .venv/bin/python benchmarks/scale_out.py --model-dir DIR --device cuda --replicas 1 2 4 --out scale-out-gpu

Each replica count gets a fresh local Ray (``LocalCluster``, the code behind ``--replicas``). On a CPU
machine the replicas share its cores (``--replica-cpus`` is only Ray's bookkeeping), so CPU-bound
scaling shows contention, not what GPUs would give. Results: benchmarks/results/<stem>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Testing"))

from server_processes import free_port, our_server  # noqa: E402
from synthetic import mr_like_image, prompt_script  # noqa: E402

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend  # noqa: E402
from nninteractive_slicer.devtools.synthetic_model import write_model  # noqa: E402
from nninteractive_slicer.protocol.contract import AFFINITY_HEADER, REPLICA_HEADER  # noqa: E402
from nninteractive_slicer.server import ServerConfig  # noqa: E402
from nninteractive_slicer.server.cluster import LocalCluster  # noqa: E402

API_KEY = "benchmark-key-0123456789"
SHAPE = (64, 64, 64)
PLACEMENT_KEYS = 400  # random keys sent to the live router to measure each replica's share of the ring
PLACEMENT_TRIALS = 20_000  # sets of sessions drawn from those shares


def run_sessions(url: str, sessions: int, prompts: int) -> dict[str, Any]:
    """``sessions`` clients at once, each on its own image; the prompt phase starts together."""
    backends = [SlicerServerBackend(url, API_KEY, timeout=600) for _ in range(sessions)]
    for i, backend in enumerate(backends):
        backend.set_image(mr_like_image(SHAPE, seed=200 + i))
    latencies: list[float] = []
    lock, start = threading.Lock(), threading.Barrier(sessions)

    def user(i: int) -> None:
        start.wait()
        for prompt in prompt_script(SHAPE, seed=300 + i, count=prompts):
            t = time.perf_counter()
            backends[i].prompt(prompt)
            with lock:
                latencies.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        errors = sum(1 for f in [pool.submit(user, i) for i in range(sessions)] if f.exception() is not None)
    wall = time.perf_counter() - t0
    placement = Counter(next(iter(b.stats.replicas), "direct") for b in backends)
    for backend in backends:
        backend.close()
    return {"prompts_per_s": len(latencies) / wall, "p50_ms": statistics.median(latencies),
            "p95_ms": float(np.percentile(latencies, 95)), "errors": errors,
            "sessions_per_replica": sorted(placement.values(), reverse=True)}


def overhead_ms(url: str, prompts: int) -> float:
    """Median of (client time - model time) per prompt of one session alone."""
    with SlicerServerBackend(url, API_KEY, timeout=600) as backend:
        backend.set_image(mr_like_image(SHAPE, seed=199))
        samples = []
        for prompt in prompt_script(SHAPE, seed=299, count=prompts):
            t = time.perf_counter()
            result = backend.prompt(prompt)
            samples.append((time.perf_counter() - t) * 1000 - (result.backend_ms or 0.0))
    return statistics.median(samples)


def ring_shares(url: str) -> list[float]:
    """Each replica's share of random affinity keys, measured on the live router."""
    seen = Counter(requests.get(f"{url}/healthz", headers={AFFINITY_HEADER: os.urandom(9).hex()},
                                timeout=60).headers[REPLICA_HEADER] for _ in range(PLACEMENT_KEYS))
    return sorted((n / PLACEMENT_KEYS for n in seen.values()), reverse=True)


def imbalance(shares: list[float], sessions: int, seed: int = 0) -> dict[str, float]:
    """Sessions on the busiest replica when ``sessions`` keys fall on a ring with these shares."""
    rng = np.random.default_rng(seed)
    draws = rng.choice(len(shares), size=(PLACEMENT_TRIALS, sessions), p=np.array(shares) / sum(shares))
    busiest = np.array([np.bincount(row, minlength=len(shares)).max() for row in draws])
    return {"even": sessions / len(shares), "busiest_mean": float(busiest.mean()),
            "busiest_p95": float(np.percentile(busiest, 95)),
            "p_busiest_at_least_double": float((busiest >= 2 * sessions / len(shares)).mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, default=None, help="default: the synthetic tiny model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--replicas", type=int, nargs="+", default=None)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--prompts", type=int, default=None, help="prompts per session")
    p.add_argument("--replica-cpus", type=float, default=0.5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="scale-out")
    args = p.parse_args()
    replicas = args.replicas or ([1, 2] if args.quick else [1, 2, 4])
    prompts = args.prompts or (5 if args.quick else 10)
    model_dir = args.model_dir or write_model(Path(tempfile.mkdtemp()) / "tiny", "tiny", seed=0)
    threads = 1 if args.device == "cpu" else None
    config = ServerConfig(model_dir=model_dir, device=args.device, torch_threads=threads,
                          api_keys={API_KEY: "bench"}, max_sessions=args.sessions + 1)  # one user holds them all

    results: dict[str, Any] = {"machine": f"{platform.node()} {os.cpu_count()} cores", "device": args.device,
                               "model": str(model_dir.name), "sessions": args.sessions, "prompts": prompts,
                               "replica_cpus": args.replica_cpus, "scale_out": [], "placement": []}
    # The direct server runs in a process of its own, as each replica does.
    with our_server(model_dir, "bench", API_KEY, "--max-sessions", str(args.sessions + 1), "--log-level", "warning",
                    device=args.device, threads=threads or (os.cpu_count() or 1)) as direct:
        results["direct"] = run_sessions(direct.url, args.sessions, prompts)
        results["direct_overhead_ms"] = overhead_ms(direct.url, prompts)
    for n in replicas:
        started = time.perf_counter()
        with LocalCluster(config, n, port=free_port(), replica_cpus=args.replica_cpus, log_level="warning",
                          log_format="text") as cluster:
            row = {"replicas": n, "startup_s": time.perf_counter() - started,
                   **run_sessions(cluster.url, args.sessions, prompts)}
            if n == 1:
                results["ray_overhead_ms"] = overhead_ms(cluster.url, prompts)
            elif n in (2, 4):
                shares = ring_shares(cluster.url)
                results["placement"].append({"replicas": n, "shares": shares, **imbalance(shares, args.sessions)})
            results["scale_out"].append(row)
        print(json.dumps(row), flush=True)

    out = HERE / "results" / args.out
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(table(results))
    print(table(results))


def table(r: dict[str, Any]) -> str:
    lines = [f"# Scale-out on Ray Serve ({r['machine']}, {r['device']}, model {r['model']})", "",
             f"{r['sessions']} concurrent sessions x {r['prompts']} mixed prompts, {r['replica_cpus']} Ray CPU per "
             "replica.", "",
             "| server | prompts/s | p50 ms | p95 ms | errors | sessions per replica |", "|---|---|---|---|---|---|"]
    d = r["direct"]
    lines.append(f"| direct (1 process) | {d['prompts_per_s']:.2f} | {d['p50_ms']:.0f} | {d['p95_ms']:.0f} | "
                 f"{d['errors']} | - |")
    for row in r["scale_out"]:
        lines.append(f"| Ray, {row['replicas']} replica(s) | {row['prompts_per_s']:.2f} | {row['p50_ms']:.0f} | "
                     f"{row['p95_ms']:.0f} | {row['errors']} | {row['sessions_per_replica']} |")
    lines += ["", f"Overhead per prompt (client time - model time, one session alone, median): direct "
                  f"{r['direct_overhead_ms']:.1f} ms, through Ray's proxy (1 replica) "
                  f"{r.get('ray_overhead_ms', float('nan')):.1f} ms.", "",
              "Placement: each replica's share of 400 random keys on the live ring, and the busiest replica's "
              f"sessions when {r['sessions']} keys fall on it ({PLACEMENT_TRIALS} draws).", "",
              "| replicas | ring shares | even | busiest (mean) | busiest (p95) | P(busiest >= 2x even) |",
              "|---|---|---|---|---|---|"]
    for pl in r["placement"]:
        lines.append(f"| {pl['replicas']} | {', '.join(f'{s:.2f}' for s in pl['shares'])} | {pl['even']:.0f} | "
                     f"{pl['busiest_mean']:.2f} | {pl['busiest_p95']:.0f} | {pl['p_busiest_at_least_double']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
