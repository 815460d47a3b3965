"""What only a GPU can show, on nnInteractive itself: torch.compile, and where its calls run.

    python benchmarks/gpu_checks.py --model-dir DIR --device cuda --size L --out results/gpu-checks.json

Three ways to run the same seeded point prompts on one image, each in a fresh session:

* ``persistent thread``: every call on one long-lived thread, as our local backend and server do
  (cuDNN's algorithm cache and CUDA's per-thread state are thread-local);
* ``new thread per call``: what a GUI does that starts each call on a fresh worker thread;
* ``persistent thread + torch.compile``: the same, with nnInteractive's ``use_torch_compile``; the first
  prompt pays the compilation, reported apart.
The first prompt of each way is reported apart (warm-up); the rest as median and p90.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "Testing")]

import cases  # noqa: E402


def session(model_dir: Path, device: str, compile_model: bool) -> Any:
    import torch
    from nnInteractive.inference.inference_session import nnInteractiveInferenceSession

    s = nnInteractiveInferenceSession(device=torch.device(device), use_torch_compile=compile_model, verbose=False,
                                      torch_n_threads=4, do_autozoom=True)
    s.initialize_from_loaded_artifacts(s._load_model_artifacts_from_disk(str(model_dir), None))  # as our loader
    return s


def run_way(name: str, model_dir: Path, device: str, size: str, prompts: int, compile_model: bool,
            on_call: Callable[[Callable[[], Any]], Any]) -> dict:
    image = cases.image(size)
    built = on_call(lambda: session(model_dir, device, compile_model))
    target = np.zeros(image.shape, np.uint8)
    on_call(lambda: (built.set_image(image[None], {"spacing": list(cases.SPACING[size])}),
                     built.set_target_buffer(target), built.preprocess_future.result()))
    times = []
    for prompt in cases.prompts(size, "point", prompts + 1):
        started = time.perf_counter()
        on_call(lambda p=prompt: built.add_point_interaction(p.coord, include_interaction=p.positive))
        times.append((time.perf_counter() - started) * 1000)
    on_call(built._reset_session)
    rest = times[1:]
    return {"way": name, "size": size, "first_ms": round(times[0], 1), "median_ms": round(float(np.median(rest)), 1),
            "p90_ms": round(float(np.percentile(rest, 90)), 1), "prompts": len(rest)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="L", choices=list(cases.SIZES))
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    persistent = ThreadPoolExecutor(max_workers=1)

    def on_persistent(fn: Callable[[], Any]) -> Any:
        return persistent.submit(fn).result()

    def on_new_thread(fn: Callable[[], Any]) -> Any:
        box: list = []
        thread = threading.Thread(target=lambda: box.append(fn()))
        thread.start()
        thread.join()
        return box[0] if box else None

    rows = [run_way("persistent thread", args.model_dir, args.device, args.size, args.prompts, False, on_persistent),
            run_way("new thread per call", args.model_dir, args.device, args.size, args.prompts, False, on_new_thread),
            run_way("persistent thread + torch.compile", args.model_dir, args.device, args.size, args.prompts, True,
                    on_persistent)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    for row in rows:
        print(row, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
