"""Interaction speed, bytes and concurrency: local, this project's server and the official server, in one run.

    .venv/bin/python benchmarks/run.py --quick          # under 3 minutes on 2 cores, tiny model on CPU
    .venv/bin/python benchmarks/run.py                  # 10 repeats per prompt type and size
    .venv/bin/python benchmarks/run.py --model-dir DIR --device cuda --backends local server --sizes M L

Every prompt goes from voxel coordinates to a Slicer segment: the module's Lib (PromptSession) on
slicer-core's real MRML, exactly as in Slicer minus rendering. Servers run as subprocesses on
127.0.0.1 behind a byte-counting proxy. Results: benchmarks/results/<stem>.json, .md and .png.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Testing"))

import cases  # noqa: E402
import mask_bytes  # noqa: E402
import report  # noqa: E402
import seed_protocol  # noqa: E402
from proxy import CountingProxy  # noqa: E402
from server_processes import official_server, our_server  # noqa: E402
from slicer_scene import make_scene  # noqa: E402

from nninteractive_slicer.backends.local import LocalBackend  # noqa: E402
from nninteractive_slicer.backends.official import OfficialBackend  # noqa: E402
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend  # noqa: E402
from nninteractive_slicer.core.synthetic_model import write_model  # noqa: E402
from nninteractive_slicer.interface import Backend  # noqa: E402
from SlicerNNInteractiveLib.prompt_session import PromptSession  # noqa: E402

API_KEY = "benchmark-key-0123456789"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


class SegmentTarget:
    """A slicer-core scene with the benchmark image as a volume and a segmentation: where results land."""

    def __init__(self, size: str, image: np.ndarray, backend: Backend) -> None:
        self.world = make_scene()
        spacing = cases.SPACING[size]
        ijk_to_ras = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])  # LPS-like axes, anisotropic voxels
        volume = self.world.volume(image, ijk_to_ras)
        segmentation = self.world.segmentation(volume)
        editor = self.world.editor_node(volume, segmentation)
        self.session = PromptSession(self.world.scene, backend, editor, self.world.app_logic)

    def prompt(self, prompt: Any) -> Any:
        """Voxel prompt -> sync check -> backend -> result written into the segment. Returns the backend result."""
        prepared = self.session.prepare(prompt)
        result = self.session.run(prepared)
        self.session.apply(prepared, result)
        return result

    def new_object(self) -> None:
        self.session.reset_segment()


def progress(message: str) -> None:
    """On stderr: stdout is silenced for the whole run, as nnInteractive prints on every prompt."""
    print(message, file=sys.stderr, flush=True)


class Target:
    """One backend kind: how to make a connected backend, and the proxy counting its bytes (None: in process)."""

    def __init__(self, kind: str, make: Callable[[], Backend], proxy: CountingProxy | None) -> None:
        self.kind, self.make, self.proxy = kind, make, proxy

    def bytes(self) -> tuple[int, int]:
        return self.proxy.snapshot() if self.proxy else (0, 0)


@contextlib.contextmanager
def targets(kinds: list[str], model_dir: Path, device: str, threads: int) -> Iterator[list[Target]]:
    with contextlib.ExitStack() as stack:
        out = []
        for kind in kinds:
            if kind == "local":
                out.append(Target(kind, lambda: LocalBackend(model_dir=model_dir, device=device, torch_threads=threads),
                                  None))
                continue
            launch = our_server if kind == "server" else official_server
            extra = ("bench", API_KEY) if kind == "server" else (API_KEY,)
            server = launch(model_dir, *extra, "--max-sessions", "12", "--log-level", "warning", device=device,
                            threads=threads)
            stack.enter_context(server)
            proxy = stack.enter_context(CountingProxy(server.port))
            backend_class = SlicerServerBackend if kind == "server" else OfficialBackend
            out.append(Target(kind, lambda url=proxy.url, cls=backend_class: cls(url, API_KEY, timeout=600), proxy))
        yield out


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
            segments[target.kind].session.sync()
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
    result.apply_to(mirror)
    seed_up = (seed_protocol.mask_prompt_upload_bytes(shape, prompt.box, prompt.mask)
               if prompt.kind in ("scribble", "lasso") else 0)
    return {"kind": prompt.kind, "index": index, "total_ms": total_ms, "backend_ms": result.backend_ms,
            "up": up1 - up0, "down": down1 - down0, "seed_down": seed_protocol.prompt_reply_bytes(mirror),
            "seed_up": seed_up}


def reconnect(target: Target, segment: SegmentTarget) -> tuple[int, float]:
    """The session is lost (Slicer restarted, server reaped it): a new one on the same image. Bytes up and ms."""
    backend = target.make()
    try:
        segment.new_object()  # only the image is to be restored: count nothing else
        segment.session.backend = backend
        up0, _ = target.bytes()
        started = time.perf_counter()
        segment.session.sync()
        return target.bytes()[0] - up0, (time.perf_counter() - started) * 1000
    finally:
        backend.close()


def summarise(samples_by_kind: dict[str, dict[str, list[dict]]], size: str) -> list[dict]:
    """Median/p95 rows; the servers' overhead is paired with local on the same prompt."""
    rows = []
    local = samples_by_kind.get("local", {})
    for backend, by_prompt in samples_by_kind.items():
        for kind, samples in by_prompt.items():
            totals = [s["total_ms"] for s in samples]
            model = [s["backend_ms"] for s in samples if s["backend_ms"] is not None]
            if backend == "local":
                overhead = [s["total_ms"] - s["backend_ms"] for s in samples]
            elif kind in local:
                overhead = [s["total_ms"] - ref["total_ms"] for s, ref in zip(samples, local[kind])]
            else:
                overhead = []
            rows.append({
                "backend": backend, "size": size, "prompt": kind,
                "total_ms_median": round(median(totals), 2), "total_ms_p95": round(percentile(totals, 95), 2),
                "backend_ms_median": round(median(model), 2) if model else None,
                "overhead_ms_median": round(median(overhead), 2),
                "bytes_up_median": int(median([s["up"] for s in samples])),
                "bytes_down_median": int(median([s["down"] for s in samples])),
                "seed_protocol_bytes_down": int(median([s["seed_down"] for s in samples])),
                "seed_protocol_bytes_up_median": int(median([s["seed_up"] for s in samples])),
            })
    return rows


def concurrency(target: Target, sessions: int, prompts_per_session: int, size: str) -> dict:
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
    return {"backend": target.kind, "sessions": sessions, "prompts_per_s": round(len(latencies) / wall, 3),
            "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
            "errors": errors}


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
    parser.add_argument("--quick", action="store_true", help="3 repeats, fewer concurrent prompts: under 3 minutes")
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (default: the synthetic tiny one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for every backend")
    parser.add_argument("--backends", nargs="+", default=["local", "server", "official"],
                        choices=["local", "server", "official"])
    parser.add_argument("--sizes", nargs="+", default=list(cases.SIZES), choices=list(cases.SIZES))
    parser.add_argument("--repeats", type=int, default=None, help="prompts per type and size (default 10, quick 3)")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--out", default="latest", help="file stem under benchmarks/results/")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 10)
    per_session = 2 if args.quick else 5

    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        model_dir = args.model_dir or write_model(Path(tmp) / "tiny", "tiny")
        model = args.model_dir.name if args.model_dir else "synthetic tiny ResEncUNet (81k parameters, random)"
        results: dict[str, Any] = {"machine": machine(args.device), "model": model, "runs": [], "image_upload": [],
                                   "concurrency": [], "sizes": {s: "x".join(map(str, cases.SIZES[s][::-1]))
                                                                for s in args.sizes},
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
            for sessions in args.sessions:  # servers alternate, as prompts do, so drifts hit both alike
                for target in all_targets:
                    if target.kind != "local":
                        results["concurrency"].append(concurrency(target, sessions, per_session, "S"))
                        progress(f"concurrency {target.kind} x{sessions}: {time.perf_counter() - started:.0f} s")
        results["compact_object_replies"] = mask_bytes.summary(cases.SIZES["L"])
        results["seconds"] = round(time.perf_counter() - started, 1)
    paths = report.write_all(results, HERE / "results", args.out)
    progress("wrote " + " ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
