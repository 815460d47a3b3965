"""Write the results: JSON (comparable across commits), a Markdown table and a Figure-3-style bar chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BACKEND_LABELS = {"local": "local (in process)", "server": "this project's server", "official": "official server"}


def write_all(results: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md", out_dir / f"{stem}.png"]
    paths[0].write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(results), encoding="utf-8")
    chart(results, paths[2])
    return paths


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# Benchmark: {results['model']} on {results['machine']}", ""]
    if results.get("notes"):
        lines += [results["notes"], ""]
    lines += [
        "## Per prompt (median of repeats; ms and bytes)", "",
        "| size | prompt | backend | total | p95 | backend | overhead | bytes up | bytes down | 0.3 protocol down |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['size']} | {r['prompt']} | {r['backend']} | {r['total_ms_median']:.0f} | {r['total_ms_p95']:.0f} "
            f"| {_ms(r['backend_ms_median'])} | {r['overhead_ms_median']:.0f} | {r['bytes_up_median']:,} "
            f"| {r['bytes_down_median']:,} | {r['seed_protocol_bytes_down']:,} |"
        )
    lines += ["", "## Image upload and reconnect", "",
              "| size | backend | upload bytes | upload ms | reconnect bytes | 0.3 protocol upload |",
              "|---|---|---:|---:|---:|---:|"]
    for u in results["image_upload"]:
        lines.append(f"| {u['size']} | {u['backend']} | {u['bytes']:,} | {u['ms']:.0f} | {u['reconnect_bytes']:,} "
                     f"| {u.get('seed_protocol_bytes', 0):,} |")
    if results.get("compact_object_replies"):
        lines += ["", "## Reply bytes for a compact object at L (computed from each protocol's encoder, no model)", "",
                  "The synthetic model predicts speckle, which compresses alike in every format. A real model predicts "
                  "a compact object and refines it locally; `mask_bytes.py` scripts that and encodes each reply.", "",
                  "| step | prompts | ours | official | 0.3 protocol |", "|---|---:|---:|---:|---:|"]
        for r in results["compact_object_replies"]:
            lines.append(f"| {r['step']} | {r['prompts']} | {r['ours']:,} | {r['official']:,} "
                         f"| {r['seed_protocol']:,} |")
    lines += ["", "## Concurrent sessions", "", "| backend | sessions | prompts/s | p50 ms | p95 ms | errors |",
              "|---|---:|---:|---:|---:|---:|"]
    for c in sorted(results["concurrency"], key=lambda c: (c["backend"], c["sessions"])):
        lines.append(f"| {c['backend']} | {c['sessions']} | {c['prompts_per_s']:.2f} | {c['p50_ms']:.0f} "
                     f"| {c['p95_ms']:.0f} | {c['errors']} |")
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def chart(results: dict[str, Any], path: Path) -> None:
    """Bars: total per prompt type, size and backend; the hatched part is the backend (model) share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in results["runs"]}, key="SML".index)
    backends = [b for b in BACKEND_LABELS if any(r["backend"] == b for r in results["runs"])]
    kinds = ["point", "bbox", "scribble", "lasso"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4.6), squeeze=False)
    colours = {"local": "#4c72b0", "server": "#55a868", "official": "#c44e52"}
    width = 0.8 / max(len(backends), 1)
    for ax, size in zip(axes[0], sizes):
        for i, backend in enumerate(backends):
            rows = {r["prompt"]: r for r in results["runs"] if r["size"] == size and r["backend"] == backend}
            xs = [k + (i - (len(backends) - 1) / 2) * width for k in range(len(kinds))]
            totals = [rows[k]["total_ms_median"] if k in rows else 0 for k in kinds]
            model = [min(rows[k]["backend_ms_median"] or 0, rows[k]["total_ms_median"]) if k in rows else 0
                     for k in kinds]
            ax.bar(xs, totals, width, color=colours[backend], alpha=0.45, label=BACKEND_LABELS[backend])
            ax.bar(xs, model, width, color=colours[backend], hatch="//", edgecolor="white")
        ax.set_xticks(range(len(kinds)), kinds)
        ax.set_title(f"{size} {results['sizes'][size]}")
        ax.set_ylabel("ms per prompt (median)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Time per prompt, median (hatched: model time)\n{results['model']}\n{results['machine']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
