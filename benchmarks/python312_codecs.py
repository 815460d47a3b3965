"""The remote client inside 3D Slicer's Python, without and with zstandard (which Slicer does not ship).

    .venv/bin/python benchmarks/python312_codecs.py [--python ~/.pyenv/versions/3.12.1/bin/python3.12]

Makes a fresh venv of that Python with what Slicer ships that the client uses (numpy, requests), measures
there, installs zstandard into it (as the module does on demand) and measures again: image upload bytes and
the client's encoding time at L and XL, and the reply bytes of a compact object's prompts.
Results: benchmarks/results/python312-codecs.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON312 = Path.home() / ".pyenv/versions/3.12.1/bin/python3.12"


def measure() -> dict:
    """Inside the Python under test: what the remote client sends, with the codecs importable here."""
    sys.path[:0] = [str(HERE), str(REPO / "Testing"), str(REPO / "Backends")]
    import cases
    import mask_bytes
    import numpy as np

    from nninteractive_slicer.backends.image_upload import EncodedImage
    from nninteractive_slicer.interface import box_slices, changed_box
    from nninteractive_slicer.protocol.wire import AVAILABLE_CODECS, choose_codec, encode_frame, pack_mask

    codec = choose_codec(["zstd", "zlib"])
    out: dict = {"python": sys.version.split()[0], "codecs": list(AVAILABLE_CODECS), "codec": codec, "images": []}
    for size in ("L", "XL"):
        image = cases.image(size)
        started = time.perf_counter()
        encoded = EncodedImage(image, cases.SPACING[size], codec, chunk_bytes=2**30)
        encoded.send(lambda index, frame: None)  # no network: the frames' bytes are counted by send()
        encoded.close()
        out["images"].append({"size": size, "raw_bytes": image.nbytes, "upload_bytes": encoded.frame_bytes,
                              "encode_ms": round((time.perf_counter() - started) * 1000)})
        del image, encoded
    replies = []
    for mask, _patch in mask_bytes.steps(cases.SIZES["L"]):
        previous = replies[-1][0] if replies else np.zeros_like(mask)
        box = changed_box(previous, mask)
        if box is not None:
            patch = mask[box_slices(box)]
            replies.append((mask, len(encode_frame({"box": box, "codec": codec}, pack_mask(patch, codec)))))
        else:
            replies.append((mask, 0))
    out["compact_object_reply_bytes"] = [size for _, size in replies]
    return out


def run_in(python: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(python), str(Path(__file__).resolve()), "--measure"], env=env, capture_output=True,
                            text=True, check=True, timeout=1200)
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(python: Path) -> dict:
    constraints = ["-c", str(REPO / "scripts" / "constraints.txt")]
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
        client = venv / "bin" / "python"
        subprocess.run([str(client), "-m", "pip", "install", "-q", *constraints, "numpy", "requests"], check=True)
        without = run_in(client)
        subprocess.run([str(client), "-m", "pip", "install", "-q", *constraints, "zstandard"], check=True)
        with_zstd = run_in(client)
    return {"without_zstandard": without, "with_zstandard": with_zstd}


def markdown(results: dict) -> str:
    a, b = results["without_zstandard"], results["with_zstandard"]
    lines = [f"# The remote client on Python {a['python']} (3D Slicer's), without and with zstandard", "",
             f"Codec chosen: {a['codec']} without, {b['codec']} with. Encoding: one-pass hash, then every chunk "
             "compressed (3 threads), no network.", "",
             "| image | raw MB | upload MB without | with | encode ms without | with |",
             "|---|---:|---:|---:|---:|---:|"]
    for x, y in zip(a["images"], b["images"]):
        lines.append(f"| {x['size']} | {x['raw_bytes'] / 1e6:.1f} | {x['upload_bytes'] / 1e6:.1f} "
                     f"| {y['upload_bytes'] / 1e6:.1f} | {x['encode_ms']:,} | {y['encode_ms']:,} |")
    lines += ["", "Compact object at L, reply bytes per prompt (frame header + packed, compressed mask; no HTTP):", "",
              f"- without: {', '.join(map(str, a['compact_object_reply_bytes']))}",
              f"- with: {', '.join(map(str, b['compact_object_reply_bytes']))}",
              f"- total: {sum(a['compact_object_reply_bytes']):,} B without, "
              f"{sum(b['compact_object_reply_bytes']):,} B with"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", type=Path, default=PYTHON312)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure()))
        return 0
    results = compare(args.python)
    out = HERE / "results" / "python312-codecs"
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
