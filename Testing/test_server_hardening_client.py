"""The remote client under server faults: its recoveries never leak server sessions."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S, ThreadedServer, hold_device, server_config
from synthetic import prompt_script, scripted_mask

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.errors import BackendUnavailableError

SCRIPT = 6


@pytest.fixture(scope="module")
def uninterrupted(local_backend_factory, image64) -> np.ndarray:
    with local_backend_factory() as backend:
        return scripted_mask(backend, image64, SCRIPT)


def test_recovery_never_holds_more_than_one_server_session(tiny_model_dir, image64, uninterrupted):
    """Issue 13.3: each prompt that outlived the client's timeout left a session open on the server."""
    with ThreadedServer(server_config(tiny_model_dir, max_sessions=2)) as server:
        backend = SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S)
        mirror = np.zeros(image64.shape, np.uint8)
        backend.set_image(image64)
        for i, prompt in enumerate(prompt_script(image64.shape, seed=7, count=SCRIPT)):
            if i % 2:  # the device is held (another user's long prediction) until the client gives up
                release = threading.Event()
                hold_device(server, release)
                backend._server.timeout = (5.0, 1.0)
                with pytest.raises(BackendUnavailableError, match="did not answer"):
                    backend.prompt(prompt)
                backend._server.timeout = (5.0, CLIENT_TIMEOUT_S)
                release.set()
            backend.prompt(prompt).apply_to(mirror)  # applied once, after a rebuild when the last one timed out
            assert len(server.runtime.sessions) == 1, f"prompt {i}: {len(server.runtime.sessions)} sessions"
        assert backend.stats.recoveries == SCRIPT // 2
        np.testing.assert_array_equal(mirror, backend.get_mask())
        backend.close()
        assert len(server.runtime.sessions) == 0
    np.testing.assert_array_equal(mirror, uninterrupted)
