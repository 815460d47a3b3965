"""Several users at once on one server: no errors, no cross-talk, each result as if run alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S
from synthetic import mr_like_image, prompt_script

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend

SESSIONS = 4
PROMPTS = 20


def run_script(backend, image, seed) -> np.ndarray:
    """20 mixed prompts (all four kinds, positive and negative) with an undo after the tenth."""
    backend.set_image(image)
    for i, prompt in enumerate(prompt_script(image.shape, seed=seed, count=PROMPTS)):
        backend.prompt(prompt)
        if i == 9:
            backend.undo()
    return backend.get_mask()


def test_four_concurrent_sessions_match_their_runs_alone(remote_server, local_backend_factory):
    images = [mr_like_image((64, 64, 64), seed=30 + i % 2) for i in range(SESSIONS)]  # two share an image
    seeds = [40 + i for i in range(SESSIONS)]
    keys = [ALICE_KEY, BOB_KEY] * (SESSIONS // 2)

    def user(i: int) -> np.ndarray:
        with SlicerServerBackend(remote_server.url, keys[i], timeout=CLIENT_TIMEOUT_S) as backend:
            return run_script(backend, images[i], seeds[i])

    with ThreadPoolExecutor(SESSIONS) as pool:
        together = list(pool.map(user, range(SESSIONS)))  # raises on any error

    with local_backend_factory() as alone:
        for i in range(SESSIONS):
            expected = run_script(alone, images[i], seeds[i])
            assert expected.any()
            np.testing.assert_array_equal(together[i], expected, err_msg=f"session {i}")
    assert len({m.tobytes() for m in together}) == SESSIONS  # four different objects, none mixed up
