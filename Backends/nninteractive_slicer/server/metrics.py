"""Prometheus metrics of one server, in its own registry (several servers can live in one test process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREDICTION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """Request counts, prediction latency, and gauges read at scrape time."""

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("nninteractive_requests", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.prediction = Histogram("nninteractive_prediction_seconds", "Model time per prompt or undo.",
                                    ["kind"], buckets=PREDICTION_BUCKETS, registry=self.registry)
        self.reaped = Counter("nninteractive_sessions_reaped", "Sessions closed by a timeout.", ["reason"],
                              registry=self.registry)
        self.upload_bytes = Counter("nninteractive_upload_bytes", "Compressed image bytes received.",
                                    registry=self.registry)
        for name, (doc, read) in gauges.items():
            Gauge(name, doc, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
