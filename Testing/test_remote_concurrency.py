"""Several users at once on one server: no errors, no cross-talk, each result as if run alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S
from synthetic import mr_like_image, prompt_script

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.interface import Point

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


def test_a_new_image_being_prepared_does_not_hold_other_sessions_prompts(remote_backend_factory, image64,
                                                                          monkeypatch):
    """nnInteractive preprocesses a new image in its own threads; the server waits for that off the device
    thread, so another user's prompt is answered meanwhile (it waited for the whole preprocessing before)."""
    from nnInteractive.inference.inference_session import nnInteractiveInferenceSession

    slow_shape = (40, 48, 56)
    entered, release = threading.Event(), threading.Event()
    preprocess = nnInteractiveInferenceSession._background_set_image

    def held(self, image, properties):
        if image.shape[1:] == slow_shape:
            entered.set()
            release.wait(60)
        return preprocess(self, image, properties)

    monkeypatch.setattr(nnInteractiveInferenceSession, "_background_set_image", held)
    failsafe = threading.Timer(60, release.set)  # before the fix, this is what let the prompt through
    failsafe.start()
    try:
        with remote_backend_factory() as other, remote_backend_factory() as newcomer, \
                ThreadPoolExecutor(1) as pool:
            other.set_image(image64)
            setting = pool.submit(newcomer.set_image, mr_like_image(slow_shape, seed=3))
            assert entered.wait(60)
            result = other.prompt(Point((32, 32, 32)))
            assert not release.is_set(), "the prompt waited for another session's image to be prepared"
            assert result.patch is not None and result.patch.any()
            release.set()
            setting.result(timeout=120)
            assert newcomer.prompt(Point((20, 24, 28))).patch is not None
    finally:
        release.set()
        failsafe.cancel()
