"""Write the results: JSON (comparable across commits), a Markdown table and a Figure-3-style bar chart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

BACKEND_LABELS = {"local": "local (in process)", "server": "this project's server", "official": "official server"}
COLOURS = {"local": "#4c72b0", "server": "#55a868", "official": "#c44e52"}


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
        "Overhead is total minus model time, for every backend (the official server's model time is measured "
        "inside it by `official_timed.py`); in brackets its bootstrap 95 % interval.", "",
        "| size | prompt | backend | total | p95 | model | overhead [95 % CI] | bytes up | bytes down "
        "| 0.3 protocol down |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['size']} | {r['prompt']} | {r['backend']} | {r['total_ms_median']:.0f} | {r['total_ms_p95']:.0f} "
            f"| {_ms(r['backend_ms_median'])} | {_overhead(r)} | {r['bytes_up_median']:,} "
            f"| {r['bytes_down_median']:,} | {r['seed_protocol_bytes_down']:,} |"
        )
    if results.get("overhead_ratio"):
        lines += ["", "## Overhead per size, all prompt types pooled (median ms [bootstrap 95 % CI])", "",
                  "| size | local | this project's server | official server | ours / official [95 % CI] |",
                  "|---|---:|---:|---:|---:|"]
        for r in results["overhead_ratio"]:
            ratio = r["server_over_official"]
            lines.append(f"| {r['size']} | {_ci(r.get('local'))} | {_ci(r['server'])} | {_ci(r['official'])} "
                         f"| {ratio['ratio']:.2f} [{ratio['ci95'][0]:.2f}, {ratio['ci95'][1]:.2f}] |")
        lines += [""] + [
            f"- Target at {r['size']} (ours <= 0.5x the official's, the ratio's whole interval): "
            f"{_met(r['server_over_official']['ci95'][1] <= 0.5)}"
            f"; the two intervals {'overlap' if _overlap(r['server'], r['official']) else 'do not overlap'}."
            for r in results["overhead_ratio"] if r["size"] == "L"]
    lines += ["", "## Image upload and reconnect", "",
              "| size | backend | upload bytes | upload ms | reconnect bytes | 0.3 protocol upload |",
              "|---|---|---:|---:|---:|---:|"]
    for u in results["image_upload"]:
        lines.append(f"| {u['size']} | {u['backend']} | {u['bytes']:,} | {u['ms']:.0f} | {u['reconnect_bytes']:,} "
                     f"| {u.get('seed_protocol_bytes', 0):,} |")
    if results.get("network"):
        lines += ["", "## A lab network (L, a new image each time; median of repeats, ms)", "",
                  "Select -> first result: the volume is chosen (the upload starts) and the user prompts at once; "
                  "without model: less the first prompt's model time (seconds on this CPU, a fraction of one on a "
                  "GPU). Resume: a new session after the old one was lost, until its first result.", "",
                  "| network | backend | upload | upload MB | select -> first result | without model | per prompt "
                  "| resume |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        summary = network_summary(results["network"])
        for row in summary:
            lines.append(f"| {row['profile']} | {row['backend']} | {row['upload_ms']:.0f} "
                         f"| {row['upload_bytes'] / 1e6:.1f} | {row['first_result_ms']:.0f} "
                         f"| {row['first_result_ms'] - row['first_model_ms']:.0f} "
                         f"| {row['prompt_ms_median']:.0f} | {row['resume_ms']:.0f} |")
        lines += ["", *network_targets(summary)]
    if results.get("xl"):
        lines += ["", f"## XL: a {results['sizes']['XL']} int16 CT (105 M voxels, 210 MB)", "",
                  "Sync: from choosing the volume until the backend holds it (reading the volume included). Peaks: "
                  "resident-set high-water mark over the sync and the prompts, minus the resident set before.", "",
                  "| backend | upload MB | sync ms | of which reading the volume | prompt ms | model ms "
                  "| client peak MiB | server peak MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results["xl"]:
            server_peak = "(in process)" if r["server_peak_mb"] is None else f"{r['server_peak_mb']:,}"
            lines.append(f"| {r['backend']} | {r['upload_bytes'] / 1e6:.1f} | {r['sync_ms']:,} | {r['prepare_ms']:,} "
                         f"| {r['prompt_ms_median']:,} | {_ms(r['model_ms_median'])} | {r['client_peak_mb']:,} "
                         f"| {server_peak} |")
        enc = results.get("xl_client_encoding", {})
        if enc:
            lines += ["", f"Client CPU work on the XL image, measured alone: our one-pass hash {enc['hash_ms']:,} ms; "
                      f"compressing every chunk on one thread {enc['compress_one_thread_ms']:,} ms "
                      f"({enc['compressed_bytes'] / 1e6:.1f} MB of {enc['raw_bytes'] / 1e6:.1f} MB)"
                      + (f"; the official client's blosc2 packing {enc['official_pack_ms']:,} ms "
                         f"({enc['official_pack_bytes'] / 1e6:.1f} MB)." if "official_pack_ms" in enc else ".")]
    if results.get("compact_object_replies"):
        lines += ["", "## Reply bytes for a compact object at L (computed from each protocol's encoder, no model)", "",
                  "The synthetic model predicts speckle, which compresses alike in every format. A real model predicts "
                  "a compact object and refines it locally; `mask_bytes.py` scripts that and encodes each reply.", "",
                  "| step | prompts | ours | official | 0.3 protocol |", "|---|---:|---:|---:|---:|"]
        for r in results["compact_object_replies"]:
            lines.append(f"| {r['step']} | {r['prompts']} | {r['ours']:,} | {r['official']:,} "
                         f"| {r['seed_protocol']:,} |")
    return "\n".join(lines + concurrency_lines(results)) + "\n"


def concurrency_lines(results: dict[str, Any]) -> list[str]:
    """The concurrency table (quiet machine, then with the benchmark's CPU load) and the targets per load."""
    lines = ["", "## Concurrent sessions (point prompts on S; median of the repeats, min-max in brackets)", ""]
    if results.get("cpu_load_processes") and any(r.get("load") == "busy" for r in results["concurrency"]):
        lines += [f"busy: {results['cpu_load_processes']} busy-loop processes run beside both servers "
                  "(started by the benchmark, the same for both).", ""]
    lines += ["| load | backend | sessions | prompts/s | p50 ms | p95 ms | CPU ms/prompt: server, client | errors |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    summary = concurrency_summary(results["concurrency"])
    for c in summary:
        cpu = (f"{c['server_cpu_ms_per_prompt'][0]:.0f}, {c['client_cpu_ms_per_prompt'][0]:.0f}"
               if "client_cpu_ms_per_prompt" in c else "n/a")
        lines.append(f"| {c['load']} | {c['backend']} | {c['sessions']} | {_spread(c['prompts_per_s'], '.2f')} "
                     f"| {_spread(c['p50_ms'], '.0f')} | {_spread(c['p95_ms'], '.0f')} | {cpu} | {c['errors']} |")
    if any("server_cpu_ms_per_prompt" in c for c in summary):
        lines += ["", "CPU ms/prompt: user + system CPU time per prompt (image set-up included, medians) of the server "
                      "process and of the benchmark's process (the clients, in threads); unlike latency, other work on "
                      "the machine barely moves it."]
    cells = {(c["load"], c["backend"], c["sessions"]): c for c in summary}
    lines += [""] + [
        f"- Target ({load}) at {n} sessions (prompts/s >= the official's, p95 <= its p95, medians of the repeats): "
        f"{_met(ours['prompts_per_s'][0] >= theirs['prompts_per_s'][0] and ours['p95_ms'][0] <= theirs['p95_ms'][0])}"
        f" ({ours['prompts_per_s'][0]:.2f} vs {theirs['prompts_per_s'][0]:.2f} prompts/s, p95 {ours['p95_ms'][0]:.0f}"
        f" vs {theirs['p95_ms'][0]:.0f} ms)."
        for load in ("quiet", "busy") for n in (4, 8)
        for ours, theirs in [(cells.get((load, "server", n)), cells.get((load, "official", n)))] if ours and theirs]
    return lines


def network_summary(rows: list[dict]) -> list[dict]:
    """Median over repeats per network profile and backend, in the order measured."""
    out = []
    for key in dict.fromkeys((r["profile"], r["backend"]) for r in rows):
        group = [r for r in rows if (r["profile"], r["backend"]) == key]
        out.append({"profile": key[0], "backend": key[1], **{
            field: statistics.median(r[field] for r in group)
            for field in ("upload_ms", "upload_bytes", "first_result_ms", "first_model_ms", "prompt_ms_median",
                          "resume_ms")}})
    return out


def network_targets(summary: list[dict]) -> list[str]:
    """Issue 14's target for our server per shaped network: the first result no later than the official client's
    upload alone, and within 1.5x our loopback first result plus our upload."""
    cells = {(r["profile"], r["backend"]): r for r in summary}
    lines = []
    for (profile, backend), row in cells.items():
        official, loopback = cells.get((profile, "official")), cells.get(("loopback", "server"))
        if backend != "server" or profile == "loopback" or official is None or loopback is None:
            continue
        first, without_model = row["first_result_ms"], row["first_result_ms"] - row["first_model_ms"]
        bound = 1.5 * loopback["first_result_ms"] + row["upload_ms"]
        lines.append(f"- {profile}: first result {first:.0f} ms ({without_model:.0f} ms without the model) against "
                     f"the official upload alone {official['upload_ms']:.0f} ms: "
                     f"{_met(first <= official['upload_ms'])} ({_met(without_model <= official['upload_ms'])} "
                     f"without the model); within 1.5x loopback + upload ({bound:.0f} ms): {_met(first <= bound)}.")
    return lines


def _overlap(a: dict, b: dict) -> bool:
    return a["ci95"][0] <= b["ci95"][1] and b["ci95"][0] <= a["ci95"][1]


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def concurrency_summary(rows: list[dict]) -> list[dict]:
    """Per CPU load, backend and session count: (median, min, max) over the repeats of throughput and latencies.
    Rows without a load (runs before the busy rows existed) were on a quiet machine."""
    out = []
    keys = {(r.get("load", "quiet"), r["backend"], r["sessions"]) for r in rows}
    for load, backend, sessions in sorted(keys, key=lambda k: (k[0] != "quiet", k[1], k[2])):
        group = [r for r in rows if (r.get("load", "quiet"), r["backend"], r["sessions"]) == (load, backend, sessions)]
        errors = sum(r["errors"] for r in group)
        fields = [f for f in ("prompts_per_s", "p50_ms", "p95_ms", "server_cpu_ms_per_prompt",
                              "client_cpu_ms_per_prompt") if f in group[0]]
        out.append({"load": load, "backend": backend, "sessions": sessions, "errors": errors, **{
            field: (statistics.median(values), min(values), max(values))
            for field in fields for values in [[r[field] for r in group]]}})
    return out


def _spread(value: tuple[float, float, float], fmt: str) -> str:
    mid, lo, hi = value
    return f"{mid:{fmt}} [{lo:{fmt}}-{hi:{fmt}}]" if lo != hi else f"{mid:{fmt}}"


def _overhead(row: dict) -> str:
    if row.get("overhead_ms_median") is None:
        return "n/a"
    lo, hi = row["overhead_ms_ci95"]
    return f"{row['overhead_ms_median']:.0f} [{lo:.0f}, {hi:.0f}]"


def _ci(cell: dict | None) -> str:
    if not cell:
        return "n/a"
    return f"{cell['median']:.1f} [{cell['ci95'][0]:.1f}, {cell['ci95'][1]:.1f}]"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def chart(results: dict[str, Any], path: Path) -> None:
    """Top: total per prompt type, size and backend (hatched: model time). Bottom: the lab network and the
    concurrent sessions, the two results a reader should grasp at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in results["runs"]}, key="SML".index)
    fig = plt.figure(figsize=(5 * max(len(sizes), 2), 9.2))
    grid = fig.add_gridspec(2, max(len(sizes), 2))
    _prompt_bars(results, sizes, [fig.add_subplot(grid[0, i]) for i in range(len(sizes))])
    half = max(len(sizes), 2) // 2
    if results.get("network"):
        _network_bars(results["network"], fig.add_subplot(grid[1, :half]))
    if results.get("concurrency"):
        _concurrency_lines(results["concurrency"], fig.add_subplot(grid[1, half:]))
    fig.suptitle(f"{results['model']} - {results['machine']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _prompt_bars(results: dict[str, Any], sizes: list[str], axes: list) -> None:
    backends = [b for b in BACKEND_LABELS if any(r["backend"] == b for r in results["runs"])]
    kinds = ["point", "bbox", "scribble", "lasso"]
    width = 0.8 / max(len(backends), 1)
    for ax, size in zip(axes, sizes):
        for i, backend in enumerate(backends):
            rows = {r["prompt"]: r for r in results["runs"] if r["size"] == size and r["backend"] == backend}
            xs = [k + (i - (len(backends) - 1) / 2) * width for k in range(len(kinds))]
            totals = [rows[k]["total_ms_median"] if k in rows else 0 for k in kinds]
            model = [min(rows[k]["backend_ms_median"] or 0, rows[k]["total_ms_median"]) if k in rows else 0
                     for k in kinds]
            ax.bar(xs, totals, width, color=COLOURS[backend], alpha=0.45, label=BACKEND_LABELS[backend])
            ax.bar(xs, model, width, color=COLOURS[backend], hatch="//", edgecolor="white")
        ax.set_xticks(range(len(kinds)), kinds)
        ax.set_title(f"Time per prompt at {size} {results['sizes'][size]} (hatched: model)", fontsize=9)
        ax.set_ylabel("ms, median")
    axes[0].legend(fontsize=8)


def _network_bars(rows: list[dict], ax) -> None:
    """Select -> first result per network and server; the hatched part is the upload."""
    summary = network_summary(rows)
    profiles = list(dict.fromkeys(r["profile"] for r in summary))
    servers = [b for b in ("server", "official") if any(r["backend"] == b for r in summary)]
    width = 0.8 / len(servers)
    for i, backend in enumerate(servers):
        cells = {r["profile"]: r for r in summary if r["backend"] == backend}
        xs = [k + (i - (len(servers) - 1) / 2) * width for k in range(len(profiles))]
        first = [cells[p]["first_result_ms"] / 1000 for p in profiles]
        upload = [cells[p]["upload_ms"] / 1000 for p in profiles]
        ax.bar(xs, first, width, color=COLOURS[backend], alpha=0.45, label=BACKEND_LABELS[backend])
        ax.bar(xs, upload, width, color=COLOURS[backend], hatch="//", edgecolor="white")
        for x, value in zip(xs, first):
            ax.text(x, value, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(profiles)), profiles, fontsize=8)
    ax.set_ylabel("s")
    ax.set_title("New L image: selecting it -> first result (hatched: the upload)", fontsize=9)
    ax.legend(fontsize=8)


def _concurrency_lines(rows: list[dict], ax) -> None:
    """p95 latency against sessions with the spread over repeats; throughput on the right axis."""
    summary = [c for c in concurrency_summary(rows) if c["load"] == "quiet"]
    right = ax.twinx()
    for backend in ("server", "official"):
        cells = [c for c in summary if c["backend"] == backend]
        if not cells:
            continue
        sessions = [c["sessions"] for c in cells]
        mid = [c["p95_ms"][0] for c in cells]
        err = [[m - c["p95_ms"][1] for m, c in zip(mid, cells)], [c["p95_ms"][2] - m for m, c in zip(mid, cells)]]
        ax.errorbar(sessions, mid, yerr=err, color=COLOURS[backend], marker="o", capsize=3,
                    label=f"{BACKEND_LABELS[backend]}: p95")
        right.plot(sessions, [c["prompts_per_s"][0] for c in cells], color=COLOURS[backend], linestyle="--",
                   marker="x", label=f"{BACKEND_LABELS[backend]}: prompts/s")
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel("p95 ms per prompt (bars: min-max of repeats)")
    right.set_ylabel("prompts/s (dashed)")
    right.set_ylim(bottom=0)
    ax.set_title("Concurrent sessions on one server (point prompts on S)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
