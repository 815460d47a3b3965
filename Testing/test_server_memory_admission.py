"""Undo snapshots count against the memory all sessions may hold (issue 23.5): they were left out, so sessions
holding many large snapshots did not keep a new image out."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.errors import ServerBusyError
from nninteractive_slicer.server.memory import session_bytes

SLACK = 256 * 1024


def test_undo_snapshots_count_against_the_memory_budget(tiny_model_dir, image64):
    per_session = session_bytes(image64.shape)
    config = server_config(tiny_model_dir, session_memory_bytes=2 * per_session + SLACK)
    with ThreadedServer(config) as server, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice, \
            SlicerServerBackend(server.url, BOB_KEY, timeout=CLIENT_TIMEOUT_S) as bob:
        alice.set_image(image64)
        rng = np.random.default_rng(0)
        for _ in range(6):  # noise compresses badly: each step keeps a large snapshot
            alice.set_initial_mask((rng.random(image64.shape) < 0.5).astype(np.uint8))
        (session,) = list(server.runtime.sessions._sessions.values())
        deadline = time.monotonic() + 30
        while session.engine.undo_state.undo < 6:  # the last snapshot is taken in the background
            assert time.monotonic() < deadline
            time.sleep(0.05)
        snapshots = session.engine.history.nbytes
        assert snapshots > 2 * SLACK, snapshots  # without them Bob's image would fit
        with pytest.raises(ServerBusyError, match="undo snapshots included"):
            bob.set_image(image64)
        alice.reset()  # Alice goes on; her history still holds the snapshots
