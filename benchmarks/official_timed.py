"""The official ``nninteractive-server``, unchanged, with nnInteractive's session calls timed inside it.

    python benchmarks/official_timed.py <nninteractive-server arguments>

The official server reports no model time, so its overhead could only be estimated as a difference
from the local backend, lost in the model's run-to-run noise. This launcher times every
``add_*_interaction`` call of nnInteractive's session (what our engine times for its ``backend_ms``)
and serves the times at ``GET /bench/model-ms`` (each read returns and forgets them), so overhead is
total minus model time for every backend alike. Nothing else in the server changes.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from typing import Any

from nnInteractive.inference.inference_session import nnInteractiveInferenceSession
from nnInteractive.inference.server import main as server_main

TIMED = ("add_point_interaction", "add_bbox_interaction", "add_scribble_interaction", "add_lasso_interaction")
_times: list[float] = []
_lock = threading.Lock()


def _timed(method: Any) -> Any:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            with _lock:
                _times.append((time.perf_counter() - started) * 1000)

    return call


def _make_app(*args: Any, **kwargs: Any) -> Any:
    app = _official_make_app(*args, **kwargs)

    @app.get("/bench/model-ms")
    def model_ms() -> list[float]:
        with _lock:
            times = list(_times)
            _times.clear()
        return times

    return app


for _name in TIMED:
    setattr(nnInteractiveInferenceSession, _name, _timed(getattr(nnInteractiveInferenceSession, _name)))
_official_make_app = server_main.make_app
server_main.make_app = _make_app

if __name__ == "__main__":
    sys.exit(server_main.main(sys.argv[1:]))
