"""Nothing lost when the server forgets: restarts, reaping and lost calls are repaired transparently."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config
from server_processes import our_server
from synthetic import prompt_script, scripted_mask

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.errors import UndoError
from nninteractive_slicer.interface import UndoState
from nninteractive_slicer.protocol.wire import image_digest

SCRIPT_LENGTH = 8
CUT = 5  # prompts before the server forgets


@pytest.fixture(scope="module")
def uninterrupted(local_backend_factory, image64) -> np.ndarray:
    with local_backend_factory() as backend:
        return scripted_mask(backend, image64, SCRIPT_LENGTH)


def run_with_interruption(backend: SlicerServerBackend, image: np.ndarray, interrupt) -> np.ndarray:
    """The script with the mask kept by applying replies, as the Slicer module does; ``interrupt`` mid-way."""
    mirror = np.zeros(image.shape, np.uint8)
    backend.set_image(image)
    for i, prompt in enumerate(prompt_script(image.shape, seed=7, count=SCRIPT_LENGTH)):
        if i == CUT:
            interrupt()
        backend.prompt(prompt).apply_to(mirror)
    np.testing.assert_array_equal(mirror, backend.get_mask())
    return mirror


@pytest.mark.parametrize("cache_dir", [True, False], ids=["disk-cache-survives", "cache-lost"])
def test_server_killed_and_restarted_mid_sequence(tmp_path, tiny_model_dir, image64, uninterrupted, cache_dir,
                                                  caplog):
    extra = ("--cache-dir", str(tmp_path / "cache")) if cache_dir else ()
    server = our_server(tiny_model_dir, "alice", ALICE_KEY, *extra).start()
    try:
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:

            def restart() -> None:
                server.kill()
                server.start()

            mask = run_with_interruption(backend, image64, restart)
            assert backend.stats.recoveries == 1
            # The image went once; again only when the restarted server could not have kept it.
            assert backend.stats.image_uploads == (1 if cache_dir else 2)
            assert "restoring it" in caplog.text  # the user's log says what happened
    finally:
        server.stop()
    np.testing.assert_array_equal(mask, uninterrupted)


def test_idle_and_dead_sessions_are_reaped_on_their_own_clocks(tiny_model_dir, image64, uninterrupted):
    config = server_config(tiny_model_dir, idle_timeout_s=4.0, liveness_timeout_s=2.0)
    with ThreadedServer(config) as server, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
        auth = {"Authorization": f"Bearer {ALICE_KEY}"}
        silent = requests.post(f"{server.url}/v1/sessions", headers=auth, timeout=10).json()["session_id"]

        def wait_for_reaping() -> None:
            time.sleep(config.liveness_timeout_s + 1.0)
            # The client without heartbeats is gone; the heartbeating one is not, though idle.
            assert requests.get(f"{server.url}/v1/sessions/{silent}", headers=auth, timeout=10).status_code == 404
            assert backend._server_session_id in server.runtime.sessions._sessions
            deadline = time.monotonic() + 10
            while backend._server_session_id in server.runtime.sessions._sessions and time.monotonic() < deadline:
                time.sleep(0.2)
            assert backend._server_session_id not in server.runtime.sessions._sessions  # reaped as idle

        mask = run_with_interruption(backend, image64, wait_for_reaping)
        assert backend.stats.recoveries == 1
        assert backend.stats.image_uploads == 1  # the image stayed in the server's cache
        metrics = requests.get(f"{server.url}/metrics", headers=auth, timeout=10).text
        assert 'nninteractive_sessions_reaped_total{reason="dead"} 1.0' in metrics
        assert 'nninteractive_sessions_reaped_total{reason="idle"} 1.0' in metrics
    np.testing.assert_array_equal(mask, uninterrupted)


def test_a_call_the_client_lost_is_detected_and_repaired(remote_server, image64, uninterrupted):
    """A prompt the server applied but whose reply never arrived (a timeout) must not count twice."""
    digest = image_digest(image64, (1.0, 1.0, 1.0))
    cached = requests.get(f"{remote_server.url}/v1/images/{digest}", headers={"Authorization": f"Bearer {ALICE_KEY}"},
                          timeout=10).json()["present"]  # another test of this session may have sent it
    with SlicerServerBackend(remote_server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:

        def applied_behind_the_clients_back() -> None:
            reply = requests.post(f"{remote_server.url}/v1/sessions/{backend._server_session_id}/prompts",
                                  json={"kind": "point", "coord": [5, 5, 5]},
                                  headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=CLIENT_TIMEOUT_S)
            assert reply.ok

        mask = run_with_interruption(backend, image64, applied_behind_the_clients_back)
        assert backend.stats.recoveries == 1
        assert backend.stats.image_uploads == (0 if cached else 1)  # the repair did not upload it again
    np.testing.assert_array_equal(mask, uninterrupted)


def test_a_lost_session_comes_back_with_its_undo_and_redo(remote_server, local_backend_factory, image64):
    script = prompt_script(image64.shape, seed=9, count=4)

    def steps(backend) -> None:
        backend.set_image(image64)
        for prompt in script[:3]:
            backend.prompt(prompt)
        backend.reset()
        backend.prompt(script[3])
        backend.undo(3)  # back across the reset

    with SlicerServerBackend(remote_server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend, \
            local_backend_factory() as reference:
        steps(backend)
        steps(reference)
        mirror = backend.get_mask()
        requests.delete(f"{remote_server.url}/v1/sessions/{backend._server_session_id}",
                        headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=CLIENT_TIMEOUT_S).raise_for_status()
        backend.redo(2).apply_to(mirror)  # the server forgot the session: rebuilt, redo stack included
        reference.redo(2)
        assert backend.stats.recoveries == 1
        np.testing.assert_array_equal(mirror, reference.get_mask())
        np.testing.assert_array_equal(backend.get_mask(), reference.get_mask())
        assert backend.undo_state() == reference.undo_state()
        backend.undo(4).apply_to(mirror)
        reference.undo(4)
        np.testing.assert_array_equal(mirror, reference.get_mask())


def test_the_server_keeps_what_its_limit_allows_and_a_rebuild_replays_no_more(tiny_model_dir, image64):
    config = server_config(tiny_model_dir, undo_steps=2)
    prompts = prompt_script(image64.shape, seed=4, count=4)
    with ThreadedServer(config) as server, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
        assert backend.capabilities().undo_depth == 2 and backend.capabilities().supports_redo
        backend.set_image(image64)
        backend.prompt(prompts[0])
        backend.reset()
        for prompt in prompts[1:]:
            backend.prompt(prompt)
        assert backend.undo_state() == UndoState(undo=2, redo=0)
        before = backend.get_mask()
        with pytest.raises(UndoError, match="at most 2 steps"):
            backend.undo(3)
        np.testing.assert_array_equal(backend.get_mask(), before)
        # The journal dropped the steps before the object the server can still undo into.
        assert [kind for kind, _ in backend._journal.steps] == ["reset", "prompt", "prompt", "prompt"]
        backend.undo(2)
        for session in server.runtime.sessions.remove_all():  # the server forgets
            server.runtime.close_session(session, "test")
        backend.redo()
        assert backend.stats.recoveries == 1
        assert backend.undo_state() == UndoState(undo=1, redo=1)  # not further back than before the loss
