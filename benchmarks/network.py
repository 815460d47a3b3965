"""A remote user on a lab network: new image to first result, time per prompt, and resuming a lost session.

Both servers run behind the same shaped proxy (``proxy.PROFILES``), one after the other and in alternating
order, each time on an image the server has never seen. "Selecting" an image is what the module does when
the user chooses a volume: ``PromptPipeline.sync()`` (the upload starts there), then the first prompt; the
clock runs from the selection, so a user who clicks at once is the worst case reported here.
"""

from __future__ import annotations

import time

import cases
from harness import SegmentTarget, Target, progress
from proxy import LOOPBACK, PROFILES
from stats import median

PROMPTS_AFTER_FIRST = 3


def measure(all_targets: list[Target], size: str, repeats: int) -> list[dict]:
    servers = [t for t in all_targets if t.proxy is not None]
    rows = []
    seed = 1000
    for profile in PROFILES.values():
        for rep in range(repeats):
            for target in servers if rep % 2 == 0 else servers[::-1]:
                seed += 1
                target.proxy.profile = profile
                try:
                    rows.append({"profile": profile.name, "backend": target.kind, "size": size, "repeat": rep,
                                 **one_user(target, size, seed)})
                finally:
                    target.proxy.profile = LOOPBACK
            progress(f"network {profile.name} repeat {rep + 1}/{repeats}")
    return rows


def one_user(target: Target, size: str, seed: int) -> dict:
    """Select a new image, prompt at once, prompt on; then lose the session and resume on a new one."""
    image = cases.image(size, seed)
    prompts = cases.prompts(size, "point", 1 + PROMPTS_AFTER_FIRST, seed=seed)
    backend = target.make()
    segment = SegmentTarget(size, image, backend)
    try:
        up0, _ = target.bytes()
        target.model_ms()  # drain the official launcher's times of earlier work
        started = time.perf_counter()
        segment.pipeline.sync()
        upload_ms = (time.perf_counter() - started) * 1000
        upload_bytes = target.bytes()[0] - up0
        first = segment.prompt(prompts[0])
        first_ms = (time.perf_counter() - started) * 1000
        official_model = target.model_ms()
        first_model_ms = sum(official_model) if official_model is not None else first.backend_ms
        prompt_ms = []
        for prompt in prompts[1:]:
            t = time.perf_counter()
            segment.prompt(prompt)
            prompt_ms.append((time.perf_counter() - t) * 1000)
    finally:
        backend.close()  # the session is lost (Slicer restarted, the server reaped it)
    backend = target.make()
    try:
        segment.pipeline.backend = backend
        started = time.perf_counter()
        segment.pipeline.sync()  # image (cached or not) and the segment so far
        segment.prompt(prompts[0])
        resume_ms = (time.perf_counter() - started) * 1000
    finally:
        backend.close()
    return {"upload_ms": round(upload_ms, 1), "upload_bytes": upload_bytes, "first_result_ms": round(first_ms, 1),
            "first_model_ms": round(first_model_ms, 1),
            "prompt_ms_median": round(median(prompt_ms), 1), "resume_ms": round(resume_ms, 1)}
