"""Nothing is lost on the official server: reaped sessions and lost replies are rebuilt from the journal,
and a full server says so."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fixtures_official import API_KEY
from server_processes import ServerProcess, official_server
from synthetic import prompt_script
from test_backend_contract import check_patch

from nninteractive_slicer.backends.official import OfficialBackend
from nninteractive_slicer.errors import BackendUnavailableError, NoImageError, ServerBusyError

IDLE_S, LIVENESS_S = 3, 2  # the server sweeps every 15 s (fixed), reaping sessions idle for longer


@pytest.fixture(scope="module")
def reaping_server(tiny_model_dir: Path) -> Iterator[ServerProcess]:
    """An official server that reaps idle sessions after a few seconds and holds one session at a time."""
    with official_server(tiny_model_dir, API_KEY, "--idle-timeout-seconds", str(IDLE_S),
                         "--liveness-timeout-seconds", str(LIVENESS_S), "--max-sessions", "1",
                         "--log-level", "info") as server:
        yield server


def reaped_count(server: ServerProcess) -> int:
    return server.log_text().count("reaped ")


def uninterrupted_masks(factory, image: np.ndarray, prompts) -> list[np.ndarray]:
    """The mask after each prompt, on a session nobody disturbs."""
    with factory() as backend:
        backend.set_image(image)
        masks = []
        for prompt in prompts:
            backend.prompt(prompt)
            masks.append(backend.get_mask())
    return masks


def test_reaped_session_is_restored_on_the_next_prompt(reaping_server, official_backend_factory, image64, caplog):
    prompts = prompt_script(image64.shape, seed=5, count=6)
    expected = uninterrupted_masks(official_backend_factory, image64, prompts)
    with OfficialBackend(reaping_server.url, reaping_server.api_key, device="cpu") as backend:
        backend.set_image(image64)
        mirror = np.zeros(image64.shape, np.uint8)
        for prompt in prompts[:3]:
            check_patch(backend.prompt(prompt), mirror, backend)
        reaped = reaped_count(reaping_server)
        deadline = time.monotonic() + 40
        while reaped_count(reaping_server) == reaped:
            assert time.monotonic() < deadline, "the server did not reap the idle session"
            time.sleep(0.5)
        with caplog.at_level(logging.INFO, logger="nninteractive_slicer.backends.official"):
            for prompt in prompts[3:]:
                check_patch(backend.prompt(prompt), mirror, backend)
        assert "dropped the session" in caplog.text
        assert "3 prompt(s) replayed" in caplog.text
        np.testing.assert_array_equal(mirror, expected[-1])
        # The restored session can undo the last prompt, as the lost one could have.
        check_patch(backend.undo(), mirror, backend)
        np.testing.assert_array_equal(mirror, expected[-2])


def test_full_server_says_retry_later(reaping_server, image64):
    with OfficialBackend(reaping_server.url, reaping_server.api_key) as holder:
        holder.set_image(image64)
        with OfficialBackend(reaping_server.url, reaping_server.api_key) as waiting:
            with pytest.raises(ServerBusyError, match="full.*retry later"):
                waiting.set_image(image64)
            with pytest.raises(NoImageError):
                waiting.get_mask()
            holder.close()  # releases the slot
            waiting.set_image(image64)
            assert waiting.image_shape == image64.shape


@pytest.fixture
def fail_once(monkeypatch):
    """``fail_once(when)``: the next request to the official server fails with a read timeout,
    ``before`` it is sent or ``after`` the server ran it (its reply lost)."""
    from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession as Client

    def arm(when: str) -> None:
        armed = [True]
        for name in ("_post_json", "_post_binary"):
            real = getattr(Client, name)

            def post(self, *args, _real=real, **kwargs):
                if not armed[0]:
                    return _real(self, *args, **kwargs)
                armed[0] = False
                if when == "after":
                    _real(self, *args, **kwargs)
                raise httpx.ReadTimeout("simulated: no reply in time")

            monkeypatch.setattr(Client, name, post)

    return arm


@pytest.mark.parametrize("when", ["before", "after"])
def test_prompt_that_timed_out_changes_nothing_and_the_next_call_rebuilds(
    official_backend_factory, image64, fail_once, caplog, when
):
    prompts = prompt_script(image64.shape, seed=3, count=4)
    expected = uninterrupted_masks(official_backend_factory, image64, prompts)
    with official_backend_factory() as backend:
        backend.set_image(image64)
        mirror = np.zeros(image64.shape, np.uint8)
        for prompt in prompts[:2]:
            check_patch(backend.prompt(prompt), mirror, backend)
        fail_once(when)
        with pytest.raises(BackendUnavailableError, match="did not answer within"):
            backend.prompt(prompts[2])
        np.testing.assert_array_equal(backend.get_mask(), expected[1])
        with caplog.at_level(logging.INFO, logger="nninteractive_slicer.backends.official"):
            for prompt in prompts[2:]:
                check_patch(backend.prompt(prompt), mirror, backend)
        np.testing.assert_array_equal(mirror, expected[-1])
        assert "2 prompt(s) replayed" in caplog.text


@pytest.mark.parametrize("call", ["reset", "starting mask"])
def test_failed_reset_or_starting_mask_leaves_the_mask(official_backend_factory, image64, fail_once, call):
    with official_backend_factory() as backend:
        backend.set_image(image64)
        mirror = np.zeros(image64.shape, np.uint8)
        prompt = prompt_script(image64.shape, seed=3, count=1)[0]
        check_patch(backend.prompt(prompt), mirror, backend)
        fail_once("before")
        with pytest.raises(BackendUnavailableError):
            backend.reset() if call == "reset" else backend.set_initial_mask(np.ones(image64.shape, np.uint8))
        np.testing.assert_array_equal(backend.get_mask(), mirror)
        backend.reset()
        assert not backend.get_mask().any()


def test_result_after_an_inexact_restore_still_updates_the_callers_copy(
    official_backend_factory, official_server, image64, caplog
):
    """The official server cannot be seeded, so with a real model a replay may land elsewhere. Simulated
    here by dropping a prompt from the journal (internals, on purpose) and releasing the session."""
    prompts = prompt_script(image64.shape, seed=3, count=3)
    with official_backend_factory() as backend:
        backend.set_image(image64)
        mirror = np.zeros(image64.shape, np.uint8)
        for prompt in prompts[:2]:
            check_patch(backend.prompt(prompt), mirror, backend)
        backend._journal.steps.pop()
        backend._journal.current -= 1
        lease = {"Authorization": f"Bearer {official_server.api_key}", "X-Lease-Token": backend._client._lease_token}
        httpx.post(f"{official_server.url}/release", headers=lease).raise_for_status()  # the server forgets it
        with caplog.at_level(logging.WARNING, logger="nninteractive_slicer.backends.official"):
            check_patch(backend.prompt(prompts[2]), mirror, backend)
        assert "differs from the lost one" in caplog.text
