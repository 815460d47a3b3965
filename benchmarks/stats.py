"""Medians, percentiles and bootstrap intervals: the few statistics the benchmark reports."""

from __future__ import annotations

import statistics

import numpy as np

BOOTSTRAP_RESAMPLES = 4000


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def median_ci(values: list[float], seed: int = 0) -> tuple[float, float]:
    """A percentile-bootstrap 95 % interval of the median."""
    if len(values) < 2:
        return (median(values), median(values))
    rng = np.random.default_rng(seed)
    data = np.asarray(values, float)
    medians = np.median(rng.choice(data, (BOOTSTRAP_RESAMPLES, data.size)), axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def ratio_ci(numerator: list[float], denominator: list[float], seed: int = 0) -> tuple[float, float, float]:
    """The ratio of two medians and its 95 % bootstrap interval (both samples resampled independently)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(numerator, float), np.asarray(denominator, float)
    ratios = (np.median(rng.choice(a, (BOOTSTRAP_RESAMPLES, a.size)), axis=1)
              / np.median(rng.choice(b, (BOOTSTRAP_RESAMPLES, b.size)), axis=1))
    return float(np.median(a) / np.median(b)), float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))
