"""The soak of benchmarks/soak.py in two minutes (issue 23, section 2): 8 annotators on one server, every kind
of operation, sessions ending and starting. The same checks as the 30-minute run, with bounds for a short run
on a shared machine: memory (the fitted line from a 45 s warm-up to the end) grows < 10 %; files
and threads return to their baseline; p95 latency of the last third of the operations at most 3x the first
third's (other work on the machine moves it by that much; a leak that slows every call grows without bound;
thirds of the operations, not of the time, because a crowded machine may finish none in a short window); no
operation fails."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import soak  # noqa: E402


def test_eight_annotators_for_two_minutes(tiny_model_dir):
    checks = soak.Checks(rss_growth=0.10, latency_tolerance=2.0, window_s=None)
    result = soak.soak(tiny_model_dir, minutes=2.0, annotators=8, interval_s=10.0, warmup_s=45.0, checks=checks)
    kinds = set(result["by_kind"])
    assert result["operations"] >= 16 and {"image", "close"} <= kinds and kinds & {"point", "bbox", "scribble",
                                                                                   "lasso"}, result["by_kind"]
    failed = {name: check for name, check in result["checks"].items() if not check["ok"]}
    assert not failed, (failed, result["errors"][:5], result["samples"])
