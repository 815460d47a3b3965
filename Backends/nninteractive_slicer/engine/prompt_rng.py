"""Each prompt's own seeded random stream for nnInteractive's refinement planning, also with prompts in parallel.

nnInteractive plans its refinement patches (``generate_bounding_boxes``) with draws from numpy's global RNG.
Seeding them from the prompt's index in its object makes a prompt sequence give the same mask in any process,
which a replay after a lost session relies on. On a CPU server two prompts may run at once (two device
threads), so seeding the global RNG for the length of a prompt would mix their draws. Instead the planner runs
under a lock with the calling prompt's own stream swapped in, and the global RNG is left as it was.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_lock = threading.Lock()
_current = threading.local()  # .state: the stream of the prompt running on this thread (numpy's state tuple)


@contextmanager
def seeded_prompt_rng(seed: int) -> Iterator[None]:
    """For the block, nnInteractive's planner draws on this thread from a stream seeded with ``seed``: the draws
    numpy's global RNG would give right after ``np.random.seed(seed)``."""
    outer = getattr(_current, "state", None)
    _current.state = np.random.RandomState(seed).get_state()
    try:
        yield
    finally:
        _current.state = outer


def _with_prompt_rng(planner: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(planner)
    def plan(*args: Any, **kwargs: Any) -> Any:
        stream = getattr(_current, "state", None)
        if stream is None:  # not inside a prompt of ours: nnInteractive as it is
            return planner(*args, **kwargs)
        with _lock:
            outside = np.random.get_state()
            np.random.set_state(stream)
            try:
                return planner(*args, **kwargs)
            finally:
                _current.state = np.random.get_state()
                np.random.set_state(outside)

    plan.prompt_rng = True  # type: ignore[attr-defined]
    return plan


def route_planner_draws() -> None:
    """Make nnInteractive's planner draw from the running prompt's stream (once per process)."""
    from nnInteractive.inference import inference_session

    with _lock:
        if not getattr(inference_session.generate_bounding_boxes, "prompt_rng", False):
            inference_session.generate_bounding_boxes = _with_prompt_rng(inference_session.generate_bounding_boxes)
