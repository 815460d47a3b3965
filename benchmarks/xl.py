"""The XL case: a 512x512x400 int16 CT (105 M voxels) through every backend, with memory peaks.

Peaks are the resident-set high-water marks (Linux VmHWM, reset through /proc/<pid>/clear_refs before each
backend) minus the resident set before: what selecting the volume and prompting on it added. The client is
this process (which, for the local backend, is the server too).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cases
from harness import SegmentTarget, Target, progress
from stats import median

from nninteractive_slicer.backends.image_upload import EncodedImage
from nninteractive_slicer.protocol.wire import choose_codec, encode_image_chunk
from SlicerNNInteractiveLib.pipeline import SYNC

SIZE = "XL"


def measure(all_targets: list[Target], repeats: int) -> tuple[list[dict], dict]:
    image = cases.image(SIZE)
    progress("XL image made")
    rows = []
    for target in sorted(all_targets, key=lambda t: t.kind == "local"):  # in process last: it keeps its memory
        backend = target.make()
        try:
            segment = SegmentTarget(SIZE, image, backend)
            pid = target.server._process.pid if target.server and target.server._process else None
            client0, server0 = _reset_peak(os.getpid()), _reset_peak(pid)
            up0, _ = target.bytes()
            started = time.perf_counter()
            prepared = segment.pipeline.prepare(SYNC)  # reads the volume: the copy the worker thread works on
            prepare_ms = (time.perf_counter() - started) * 1000
            try:
                segment.pipeline.run(prepared)
            finally:
                segment.pipeline.abandon(prepared)
            sync_ms = (time.perf_counter() - started) * 1000
            upload_bytes = target.bytes()[0] - up0
            target.model_ms()  # forget model times of earlier phases (the official launcher keeps them until read)
            prompt_ms, model_ms = [], []
            for prompt in cases.prompts(SIZE, "point", repeats):
                t = time.perf_counter()
                result = segment.prompt(prompt)
                prompt_ms.append((time.perf_counter() - t) * 1000)
                model = target.model_ms()
                model_ms.append(sum(model) if model is not None else result.backend_ms)
            rows.append({"backend": target.kind, "upload_bytes": upload_bytes, "sync_ms": round(sync_ms),
                         "prepare_ms": round(prepare_ms), "prompt_ms_median": round(median(prompt_ms)),
                         "model_ms_median": round(median(model_ms)),
                         "client_peak_mb": round((_peak(os.getpid()) - client0) / 2**20),
                         "server_peak_mb": round((_peak(pid) - server0) / 2**20) if pid else None})
            progress(f"XL {target.kind}: sync {sync_ms / 1000:.1f} s, prompt {median(prompt_ms) / 1000:.1f} s")
        finally:
            backend.close()
    return rows, client_encoding(image)


def client_encoding(image) -> dict:
    """The client's CPU work inside the sync, measured alone: our one-pass hash (with compression look-ahead),
    compressing every chunk, and the official client's blosc2 packing."""
    spacing = cases.SPACING[SIZE]
    codec = choose_codec(["zstd"])
    started = time.perf_counter()
    encoded = EncodedImage(image, spacing, codec, chunk_bytes=2**30)
    hash_ms = (time.perf_counter() - started) * 1000
    encoded.close()
    flat = image.reshape(-1)
    started = time.perf_counter()
    compressed = sum(len(encode_image_chunk(flat[a:b], codec)) for a, b in encoded.ranges)
    compress_ms = (time.perf_counter() - started) * 1000
    out = {"raw_bytes": image.nbytes, "hash_ms": round(hash_ms), "compress_one_thread_ms": round(compress_ms),
           "compressed_bytes": compressed}
    try:
        from nnInteractive.inference.remote.remote_session import _compression_threads
        from nnInteractive.inference.remote.serialization import pack_array
    except ImportError:
        return out
    started = time.perf_counter()
    out["official_pack_bytes"] = len(pack_array(image, nthreads=_compression_threads()))  # as its client does
    out["official_pack_ms"] = round((time.perf_counter() - started) * 1000)
    return out


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak(pid: int | None) -> int:
    """Reset the high-water mark of ``pid``'s resident set; returns the resident set now."""
    if pid is None:
        return 0
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status(pid, "VmRSS")


def _peak(pid: int | None) -> int:
    return _status(pid, "VmHWM") if pid else 0
