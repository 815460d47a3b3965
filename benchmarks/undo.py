"""Multi-step undo and redo: their time against a prompt's, and the memory each step keeps, at S, M and L.

    .venv/bin/python benchmarks/undo.py                  # tiny model on the CPU, about 2 minutes on 2 cores
    .venv/bin/python benchmarks/undo.py --model-dir DIR --device cuda

Each size runs the same seeded prompts (point, box, scribble, lasso) in the local backend, whose engine
is also the server's. A prompt's time includes the snapshot taken after it (also shown on its own). Undo
and redo of 1 step and of all steps are timed back and forth, so each ratio is measured side by side in
one run. Bytes per step are the compressed snapshots the history holds, against the raw state they
stand for. Last, a history with a budget of a few steps shows what happens at the memory limit.
Results: benchmarks/results/undo.json and undo.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases  # noqa: E402
from run import machine  # noqa: E402

from nninteractive_slicer.backends.local import LocalBackend  # noqa: E402
from nninteractive_slicer.devtools.synthetic_model import write_model  # noqa: E402
from nninteractive_slicer.engine.undo_history import take_snapshot  # noqa: E402
from nninteractive_slicer.errors import UndoError  # noqa: E402
from nninteractive_slicer.interface import Prompt  # noqa: E402

MIB = 1024 * 1024


def script(size: str, per_kind: int) -> list[Prompt]:
    """Positive prompts of every kind, interleaved (negative ones only add refinement time to the prompts)."""
    by_kind = [[p for p in cases.prompts(size, kind, 3 * per_kind) if p.positive][:per_kind]
               for kind in cases.PROMPT_KINDS]
    return [p for group in zip(*by_kind) for p in group]


def timed_ms(call: Any) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def measure(size: str, model_dir: Path, device: str, threads: int, per_kind: int, rounds: int) -> dict[str, Any]:
    with LocalBackend(model_dir=model_dir, device=device, torch_threads=threads) as backend:
        backend.set_image(cases.image(size), cases.SPACING[size])
        prompts = script(size, per_kind)
        prompt_ms = [timed_ms(lambda p=p: backend.prompt(p)) for p in prompts]
        engine = backend._engine
        session = engine.inner
        snapshot_ms = [timed_ms(lambda: backend._worker.call(take_snapshot, session)) for _ in range(rounds)]
        steps = len(prompts)
        moves: dict[str, list[float]] = {"undo_1": [], "redo_1": [], "undo_all": [], "redo_all": []}
        for _ in range(rounds):
            moves["undo_1"].append(timed_ms(lambda: backend.undo(1)))
            moves["redo_1"].append(timed_ms(lambda: backend.redo(1)))
            moves["undo_all"].append(timed_ms(lambda: backend.undo(steps)))
            moves["redo_all"].append(timed_ms(lambda: backend.redo(steps)))
        kept = engine.history._steps[1:]  # the prompts' snapshots (the first is the image's empty state)
        step_bytes = [step.nbytes for step in kept]
        raw_bytes = session.interactions.numel() * session.interactions.element_size() + engine.mask.nbytes
    row = {"size": size, "shape": list(cases.SIZES[size]), "steps": steps, "prompt_ms_median": median(prompt_ms),
           "snapshot_ms_median": median(snapshot_ms), "step_bytes_median": median(step_bytes),
           "step_bytes_max": max(step_bytes), "raw_state_bytes": raw_bytes}
    row.update({f"{name}_ms_median": median(values) for name, values in moves.items()})
    row["worst_move_over_prompt"] = max(row[f"{name}_ms_median"] for name in moves) / row["prompt_ms_median"]
    return row


def at_budget(size: str, model_dir: Path, device: str, threads: int, step_bytes: float, per_kind: int
              ) -> dict[str, Any]:
    """A budget of about three steps: the history keeps the newest, and undoing further is an error."""
    budget = int(3.5 * step_bytes)
    with LocalBackend(model_dir=model_dir, device=device, torch_threads=threads,
                      undo_budget_bytes=budget) as backend:
        backend.set_image(cases.image(size), cases.SPACING[size])
        prompts = script(size, per_kind)
        for prompt in prompts:
            backend.prompt(prompt)
        history = backend._engine.history
        state = backend.undo_state()
        before = backend.get_mask()
        try:
            backend.undo(state.undo + 1)
            error = None
        except UndoError as exc:
            error = str(exc)
        unchanged = bool((backend.get_mask() == before).all())
        return {"size": size, "budget_bytes": budget, "prompts": len(prompts), "undo_available": state.undo,
                "evicted": history.evicted, "held_bytes": history.nbytes, "undo_beyond_error": error,
                "mask_unchanged_after_error": unchanged}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Undo and redo ({result['machine']}, {result['model']})", "",
             "| size | steps | prompt ms | snapshot ms | undo 1 | redo 1 | undo all | redo all | worst / prompt | "
             "KiB per step (median, max) | raw state MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(
            f"| {r['size']} {'x'.join(map(str, r['shape']))} | {r['steps']} | {r['prompt_ms_median']:.0f} | "
            f"{r['snapshot_ms_median']:.1f} | {r['undo_1_ms_median']:.1f} | {r['redo_1_ms_median']:.1f} | "
            f"{r['undo_all_ms_median']:.1f} | {r['redo_all_ms_median']:.1f} | {r['worst_move_over_prompt']:.2g} | "
            f"{r['step_bytes_median'] / 1024:.0f}, {r['step_bytes_max'] / 1024:.0f} | "
            f"{r['raw_state_bytes'] / MIB:.1f} |")
    b = result["budget"]
    lines += ["", f"At the budget ({b['size']}, {b['budget_bytes'] / 1024:.0f} KiB, {b['prompts']} prompts): "
              f"{b['undo_available']} steps kept, {b['evicted']} oldest evicted, {b['held_bytes'] / 1024:.0f} KiB "
              f"held; undoing one more: \"{b['undo_beyond_error']}\" (mask unchanged: "
              f"{b['mask_unchanged_after_error']}).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None, help="model folder (default: the synthetic tiny one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=list(cases.SIZES), choices=list(cases.SIZES))
    parser.add_argument("--per-kind", type=int, default=2, help="prompts of each kind per size")
    parser.add_argument("--rounds", type=int, default=3, help="undo/redo round trips timed per size")
    parser.add_argument("--out", default="undo", help="file stem under benchmarks/results/")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        model_dir = args.model_dir or write_model(Path(tmp) / "tiny", "tiny")
        runs = [measure(size, model_dir, args.device, args.threads, args.per_kind, args.rounds) for size in args.sizes]
        budget_size = "M" if "M" in args.sizes else args.sizes[0]
        step = next(r["step_bytes_median"] for r in runs if r["size"] == budget_size)
        budget = at_budget(budget_size, model_dir, args.device, args.threads, step, args.per_kind)
    result = {"machine": machine(args.device), "model": str(args.model_dir or "synthetic tiny model"),
              "runs": runs, "budget": budget}
    out = HERE / "results" / args.out
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
