"""Segment histories: bytes per prompt, and the time to rebuild the model state from a saved history.

Records a seeded prompt script (all four kinds, a third of them negative) on the local backend,
writes the history, then times what a reopened Slicer scene does once: read the history, send the
image, replay every step (checking the result's digest). Writes ``results/history.md`` and ``.json``.

    .venv/bin/python benchmarks/history.py                       # 256x256x130, 20 prompts, tiny model, CPU
    .venv/bin/python benchmarks/history.py --shape 64 64 64 --prompts 10
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Testing"))

from synthetic import mr_like_image, prompt_script  # noqa: E402

from nninteractive_slicer import history as h  # noqa: E402
from nninteractive_slicer.backends.local import LocalBackend  # noqa: E402
from nninteractive_slicer.devtools.synthetic_model import write_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(130, 256, 256), help="array shape (k, j, i)")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--model-dir", help="model folder (default: the synthetic tiny model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="history")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    model_dir = args.model_dir or write_model(Path(tempfile.mkdtemp()) / "tiny", "tiny", seed=0)
    image = mr_like_image(shape, seed=1)
    spacing_matrix = np.diag([2.0, 0.8, 0.8, 1.0])
    prompts = prompt_script(shape, seed=0, count=args.prompts)

    with LocalBackend(model_dir=model_dir, device=args.device, torch_threads=2) as backend:
        identity = h.ImageIdentity.of(image, spacing_matrix)
        backend.set_image(image, identity.spacing)
        recorder = h.HistoryRecorder(identity, h.ModelIdentity.of(backend.capabilities()), backend.name)
        record_ms, step_ms = 0.0, []
        for prompt in prompts:
            started = time.perf_counter()
            result = backend.prompt(prompt)
            model_done = time.perf_counter()
            recorder.prompted(prompt, result)
            step_ms.append((time.perf_counter() - model_done) * 1000)
            record_ms += (model_done - started) * 1000
        started = time.perf_counter()
        text = h.dumps(recorder.history)
        dumps_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        h.dumps(recorder.history)  # what Slicer pays per step: every step but the newest is encoded already
        rewrite_ms = (time.perf_counter() - started) * 1000

    with LocalBackend(model_dir=model_dir, device=args.device, torch_threads=2) as backend:
        started = time.perf_counter()
        history = h.loads(text)
        loaded = time.perf_counter()
        report = h.replay(history, backend, image)
        rebuild_s = time.perf_counter() - started
        load_ms = (loaded - started) * 1000
    empty = h.dumps(h.History(identity, recorder.history.model, "local"))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "shape": list(shape), "prompts": args.prompts, "device": args.device,
        "history_bytes": len(text), "header_bytes": len(empty),
        "bytes_per_prompt": round((len(text) - len(empty)) / args.prompts),
        "recording_ms_per_step_median": round(float(np.median(step_ms)), 2),
        "dumps_ms": round(dumps_ms, 1), "rewrite_ms": round(rewrite_ms, 1), "loads_ms": round(load_ms, 1),
        "model_ms_when_recorded": round(record_ms), "rebuild_s": round(rebuild_s, 2),
        "rebuild_identical": report.identical,
    }
    out = HERE / "results" / args.out
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(
        f"# Segment history ({'x'.join(map(str, shape[::-1]))}, {args.prompts} prompts, {args.device})\n\n"
        "| measure | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in result.items()))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
