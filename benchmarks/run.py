"""Interaction speed, bytes and concurrency: local, this project's server and the official server, in one run.

    .venv/bin/python benchmarks/run.py --quick          # under 3 minutes on 2 cores, tiny model on CPU
    .venv/bin/python benchmarks/run.py                  # 10 repeats per prompt type and size
    .venv/bin/python benchmarks/run.py --model-dir DIR --device cuda --backends local server --sizes M L

Every prompt goes from voxel coordinates to a Slicer segment: the module's Lib (PromptPipeline) on
slicer-core's real MRML, exactly as in Slicer minus rendering. Servers run as subprocesses on
127.0.0.1 behind a byte-counting proxy. Results: benchmarks/results/<stem>.json, .md and .png.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Testing"))

import cases  # noqa: E402
import mask_bytes  # noqa: E402
import network  # noqa: E402
import report  # noqa: E402
import seed_protocol  # noqa: E402
import xl  # noqa: E402
from cpu_load import cpu_load  # noqa: E402
from harness import SegmentTarget, Target, progress, targets  # noqa: E402
from stats import median, median_ci, percentile, ratio_ci  # noqa: E402

from nninteractive_slicer.devtools.synthetic_model import write_model  # noqa: E402

CONCURRENCY_REPEATS = 3  # alternating repetitions of the concurrency runs (2 with --quick)


def measure_size(all_targets: list[Target], size: str, repeats: int) -> tuple[dict[str, list[dict]], list[dict]]:
    """Every prompt type ``repeats`` times on one image. Each prompt runs on every backend back to back (in a
    rotating order), so slow drifts of a shared machine hit all backends alike. Returns samples and uploads."""
    image = cases.image(size)
    backends = {t.kind: t.make() for t in all_targets}
    try:
        segments = {kind: SegmentTarget(size, image, backend) for kind, backend in backends.items()}
        uploads = []
        for target in all_targets:
            up0, _ = target.bytes()
            started = time.perf_counter()
            segments[target.kind].pipeline.sync()
            uploads.append({"backend": target.kind, "size": size, "ms": (time.perf_counter() - started) * 1000,
                            "bytes": target.bytes()[0] - up0,
                            "seed_protocol_bytes": seed_protocol.image_upload_bytes(image)})
        samples: dict[str, list[dict]] = {t.kind: [] for t in all_targets}
        for kind in cases.PROMPT_KINDS:
            mirrors = {}
            for target in all_targets:
                segments[target.kind].new_object()
                mirrors[target.kind] = np.zeros(image.shape, np.uint8)
            for index, prompt in enumerate(cases.prompts(size, kind, repeats)):
                turn = index % len(all_targets)
                for target in all_targets[turn:] + all_targets[:turn]:
                    samples[target.kind].append(measure_one(target, segments[target.kind], prompt, index,
                                                            mirrors[target.kind], image.shape))
        for upload, target in zip(uploads, all_targets):
            upload["reconnect_bytes"], upload["reconnect_ms"] = reconnect(target, segments[target.kind])
    finally:
        for backend in backends.values():
            backend.close()
    return samples, uploads


def measure_one(target: Target, segment: SegmentTarget, prompt: Any, index: int, mirror: np.ndarray,
                shape: tuple[int, int, int]) -> dict:
    """One prompt from voxel coordinates into the segment: time, model time, bytes, and the 0.3 protocol's bytes."""
    up0, down0 = target.bytes()
    started = time.perf_counter()
    result = segment.prompt(prompt)
    total_ms = (time.perf_counter() - started) * 1000
    up1, down1 = target.bytes()
    model = target.model_ms()  # read after the clock stopped, past the proxy
    backend_ms = sum(model) if model is not None else result.backend_ms
    result.apply_to(mirror)
    seed_up = (seed_protocol.mask_prompt_upload_bytes(shape, prompt.box, prompt.mask)
               if prompt.kind in ("scribble", "lasso") else 0)
    return {"kind": prompt.kind, "index": index, "total_ms": total_ms, "backend_ms": backend_ms,
            "up": up1 - up0, "down": down1 - down0, "seed_down": seed_protocol.prompt_reply_bytes(mirror),
            "seed_up": seed_up}


def reconnect(target: Target, segment: SegmentTarget) -> tuple[int, float]:
    """The session is lost (Slicer restarted, server reaped it): a new one on the same image. Bytes up and ms."""
    backend = target.make()
    try:
        segment.new_object()  # only the image is to be restored: count nothing else
        segment.pipeline.backend = backend
        up0, _ = target.bytes()
        started = time.perf_counter()
        segment.pipeline.sync()
        return target.bytes()[0] - up0, (time.perf_counter() - started) * 1000
    finally:
        backend.close()


def summarise(samples_by_kind: dict[str, dict[str, list[dict]]], size: str) -> list[dict]:
    """Median/p95 rows. Overhead is total minus model time, for every backend measured the same way."""
    rows = []
    for backend, by_prompt in samples_by_kind.items():
        for kind, samples in by_prompt.items():
            totals = [s["total_ms"] for s in samples]
            model = [s["backend_ms"] for s in samples if s["backend_ms"] is not None]
            overhead = [s["total_ms"] - s["backend_ms"] for s in samples if s["backend_ms"] is not None]
            rows.append({
                "backend": backend, "size": size, "prompt": kind,
                "total_ms_median": round(median(totals), 2), "total_ms_p95": round(percentile(totals, 95), 2),
                "backend_ms_median": round(median(model), 2) if model else None,
                "overhead_ms_median": round(median(overhead), 2) if overhead else None,
                "overhead_ms_ci95": [round(v, 2) for v in median_ci(overhead)] if overhead else None,
                "overhead_ms": [round(v, 2) for v in overhead],
                "bytes_up_median": int(median([s["up"] for s in samples])),
                "bytes_down_median": int(median([s["down"] for s in samples])),
                "seed_protocol_bytes_down": int(median([s["seed_down"] for s in samples])),
                "seed_protocol_bytes_up_median": int(median([s["seed_up"] for s in samples])),
            })
    return rows


def overhead_ratios(runs: list[dict]) -> list[dict]:
    """Per size, all prompt types pooled: our server's overhead over the official's, with a bootstrap 95 % CI."""
    out = []
    for size in dict.fromkeys(r["size"] for r in runs):
        pooled = {b: [v for r in runs if r["size"] == size and r["backend"] == b for v in r["overhead_ms"]]
                  for b in ("server", "official", "local")}
        if not pooled["server"] or not pooled["official"]:
            continue
        row: dict[str, Any] = {"size": size}
        for backend, values in pooled.items():
            if values:
                row[backend] = {"median": round(median(values), 2), "ci95": [round(v, 2) for v in median_ci(values)]}
        ratio, lo, hi = ratio_ci(pooled["server"], pooled["official"])
        row["server_over_official"] = {"ratio": round(ratio, 3), "ci95": [round(lo, 3), round(hi, 3)]}
        out.append(row)
    return out


def concurrency(target: Target, sessions: int, prompts_per_session: int, size: str, repeat: int = 0) -> dict:
    """``sessions`` clients at once, each on its own session and the same image; all prompts timed."""
    image = cases.image(size)
    script = cases.prompts(size, "point", prompts_per_session, seed=7)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    ready = threading.Barrier(sessions + 1)

    def client() -> None:
        nonlocal errors
        backend = None
        try:
            backend = target.make()
            backend.set_image(image, cases.SPACING[size])
            ready.wait()
            for prompt in script:
                started = time.perf_counter()
                backend.prompt(prompt)
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
        except Exception:
            with lock:
                errors += 1
            with contextlib.suppress(threading.BrokenBarrierError):
                ready.abort()
        finally:
            if backend is not None:
                backend.close()

    threads = [threading.Thread(target=client) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"backend": target.kind, "sessions": sessions, "repeat": repeat,
            "prompts_per_s": round(len(latencies) / wall, 3),
            "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
            "errors": errors}


def concurrency_rows(servers: list[Target], sessions_list: list[int], repeats: int, per_session: int,
                     load: str) -> list[dict]:
    """Every session count on every server, ``repeats`` times, the servers alternating so that drifts of a
    shared machine hit both alike. ``load`` names the CPU load running beside them ("quiet" or "busy")."""
    rows = []
    started = time.perf_counter()
    for repeat in range(repeats):
        for sessions in sessions_list:
            for target in servers if (repeat + sessions) % 2 == 0 else servers[::-1]:
                pid = target.server.pid if target.server else None
                cpu, client_cpu = process_cpu_s(pid), process_cpu_s(os.getpid())
                row = concurrency(target, sessions, per_session, "S", repeat)
                prompts = sessions * per_session
                rows.append({**row, "load": load,  # CPU times: what each side used, whatever else the machine ran
                             "server_cpu_ms_per_prompt": round((process_cpu_s(pid) - cpu) * 1000 / prompts, 1),
                             "client_cpu_ms_per_prompt": round((process_cpu_s(os.getpid()) - client_cpu) * 1000
                                                               / prompts, 1)})
        progress(f"concurrency ({load}) repeat {repeat + 1}: {time.perf_counter() - started:.0f} s")
    return rows


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a process (all its threads) has used so far; 0 without one (or off Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import torch

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return f"{gpu or cpu}, {os.cpu_count()} cores, {device}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="3 repeats, fewer concurrent prompts, no network profiles and no XL: under 4 minutes")
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (default: the synthetic tiny one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for every backend")
    parser.add_argument("--backends", nargs="+", default=["local", "server", "official"],
                        choices=["local", "server", "official"])
    parser.add_argument("--sizes", nargs="+", default=["S", "M", "L"], choices=["S", "M", "L"])
    parser.add_argument("--repeats", type=int, default=None, help="prompts per type and size (default 10, quick 3)")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--busy", action=argparse.BooleanOptionalAction, default=None,
                        help="concurrency again with a CPU load beside the servers (default: on, off with --quick)")
    parser.add_argument("--busy-sessions", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--busy-load", type=int, default=os.cpu_count() or 2,
                        help="busy-loop processes of the CPU load (default: one per core)")
    parser.add_argument("--network", action=argparse.BooleanOptionalAction, default=None,
                        help="the lab-network profiles (default: on, off with --quick)")
    parser.add_argument("--xl", action=argparse.BooleanOptionalAction, default=None,
                        help="the 512x512x400 CT case (default: on, off with --quick)")
    parser.add_argument("--out", default="latest", help="file stem under benchmarks/results/")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 10)
    per_session = 2 if args.quick else 5
    with_network = (not args.quick) if args.network is None else args.network
    with_xl = (not args.quick) if args.xl is None else args.xl
    with_busy = (not args.quick) if args.busy is None else args.busy

    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        model_dir = args.model_dir or write_model(Path(tmp) / "tiny", "tiny")
        model = args.model_dir.name if args.model_dir else "synthetic tiny ResEncUNet (81k parameters, random)"
        results: dict[str, Any] = {"machine": machine(args.device), "model": model, "runs": [], "image_upload": [],
                                   "concurrency": [], "network": [], "xl": [],
                                   "sizes": {s: "x".join(map(str, cases.SIZES[s][::-1])) for s in [*args.sizes, "XL"]},
                                   "repeats": repeats}
        started = time.perf_counter()
        with targets(args.backends, model_dir, args.device, args.threads) as all_targets:
            for size in args.sizes:
                samples, uploads = measure_size(all_targets, size, repeats)
                results["image_upload"] += uploads
                by_backend = {b: {k: [s for s in rows if s["kind"] == k] for k in cases.PROMPT_KINDS}
                              for b, rows in samples.items()}
                results["runs"] += summarise(by_backend, size)
                progress(f"{size}: {sum(map(len, samples.values()))} prompts, {time.perf_counter() - started:.0f} s")
            servers = [t for t in all_targets if t.kind != "local"]
            repeats_c = 2 if args.quick else CONCURRENCY_REPEATS
            results["concurrency"] += concurrency_rows(servers, args.sessions, repeats_c, per_session, "quiet")
            if with_busy:
                results["cpu_load_processes"] = args.busy_load
                with cpu_load(args.busy_load):
                    results["concurrency"] += concurrency_rows(servers, args.busy_sessions, max(3, repeats_c),
                                                               per_session, "busy")
            if with_network and "L" in args.sizes:
                results["network"] = network.measure(all_targets, "L", 1 if args.quick else 3)
            if with_xl:
                results["xl"], results["xl_client_encoding"] = xl.measure(all_targets, 1)  # AutoZoom: ~100 s each
        results["overhead_ratio"] = overhead_ratios(results["runs"])
        results["compact_object_replies"] = mask_bytes.summary(cases.SIZES["L"])
        results["seconds"] = round(time.perf_counter() - started, 1)
    paths = report.write_all(results, HERE / "results", args.out)
    progress("wrote " + " ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
