"""Budgets: one user cannot take every session nor the upload budget; sessions are admitted by memory, and one
prompt's size is bounded."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config
from synthetic import disk_crop

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.errors import InvalidPromptError, ServerBusyError
from nninteractive_slicer.interface import Lasso
from nninteractive_slicer.protocol.wire import encode_frame, encode_image_chunk
from nninteractive_slicer.server.config import MIB, Limits
from nninteractive_slicer.server.memory import SESSION_BYTES_PER_VOXEL

ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}


def tiny_chunk_of_a_big_image(shape: tuple[int, int, int]) -> bytes:
    """Chunk 0 of a float32 image of ``shape``: zeros, so a few hundred bytes declare megabytes."""
    elements = 4 * MIB // 4
    header = {"shape": list(shape), "dtype": "float32", "spacing": [1, 1, 1], "codec": "zlib",
              "chunk_elements": elements}
    return encode_frame(header, encode_image_chunk(np.zeros(elements, np.float32), "zlib"))


def test_one_user_cannot_take_every_session_nor_the_upload_budget(tiny_model_dir, image64):
    """Issue 13.4: one user held every session slot, and one 645-byte chunk blocked everyone's uploads."""
    config = server_config(tiny_model_dir, max_sessions=3, cache_bytes=64 * MIB)
    with ThreadedServer(config) as server:
        url = server.url
        claims = [requests.post(f"{url}/v1/sessions", headers=ALICE, timeout=10) for _ in range(3)]
        assert [c.status_code for c in claims] == [201, 201, 503]
        refused = claims[-1]
        assert "one user" in refused.json()["detail"] and int(refused.headers["Retry-After"]) >= 1
        for claim in claims[:2]:  # heartbeats keep them, but they are still only Alice's share
            assert requests.post(f"{url}/v1/sessions/{claim.json()['session_id']}/heartbeat", headers=ALICE,
                                 timeout=10).ok
        bobs = requests.post(f"{url}/v1/sessions", headers=BOB, timeout=10)
        assert bobs.status_code == 201
        requests.delete(f"{url}/v1/sessions/{bobs.json()['session_id']}", headers=BOB, timeout=10)

        chunk = tiny_chunk_of_a_big_image((256, 256, 128))  # declares 32 MiB: half the upload budget
        assert len(chunk) < 20_000
        first = requests.put(f"{url}/v1/images/{'a' * 64}/chunks/0", data=chunk, headers=ALICE, timeout=30)
        assert first.status_code == 200 and not first.json()["complete"]
        second = requests.put(f"{url}/v1/images/{'b' * 64}/chunks/0", data=chunk, headers=ALICE, timeout=30)
        assert second.status_code == 503 and "Your uploads" in second.json()["detail"], second.text
        assert "Retry-After" in second.headers
        too_big = tiny_chunk_of_a_big_image((256, 256, 192))  # 48 MiB: more than one user's share
        assert requests.put(f"{url}/v1/images/{'c' * 64}/chunks/0", data=too_big, headers=BOB,
                            timeout=30).status_code == 413
        with SlicerServerBackend(url, BOB_KEY, timeout=CLIENT_TIMEOUT_S) as bob:  # Bob's uploads still go through
            bob.set_image(image64)
            assert bob.stats.image_uploads == 1


def test_sessions_are_admitted_by_memory_and_prompts_by_size(tiny_model_dir, image64):
    """Issue 13.5: a 2 MB upload could ask for 20 GB per session, and one prompt could hold the device for long."""
    per_session = image64.size * SESSION_BYTES_PER_VOXEL
    config = server_config(tiny_model_dir, session_memory_bytes=per_session * 3 // 2,
                           limits=Limits(max_prompt_voxels=64 * 64 * 8))
    with ThreadedServer(config) as server:
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice, \
                SlicerServerBackend(server.url, BOB_KEY, timeout=CLIENT_TIMEOUT_S) as bob:
            alice.set_image(image64)
            with pytest.raises(ServerBusyError, match="memory") as busy:
                bob.set_image(image64)  # fits the budget, but not beside Alice's session
            assert busy.value.retry_after >= 1
            # An image no session could ever hold is refused at its first chunk, with the reason.
            refused = requests.put(f"{server.url}/v1/images/{'d' * 64}/chunks/0", headers=BOB, timeout=30,
                                   data=tiny_chunk_of_a_big_image((128, 128, 128)))
            assert refused.status_code == 507 and "memory" in refused.json()["detail"]
            # One lasso over the whole volume: a clear 422 before any device time.
            whole = Lasso(np.ones(image64.shape, np.uint8), ((0, 64), (0, 64), (0, 64)))
            with pytest.raises(InvalidPromptError, match="at most 32768"):
                alice.prompt(whole)
            assert alice.prompt(Lasso(disk_crop((20, 20), 0, True), ((30, 31), (20, 40), (20, 40)))).changed
        with SlicerServerBackend(server.url, BOB_KEY, timeout=CLIENT_TIMEOUT_S) as bob:
            bob.set_image(image64)  # Alice's session closed: its memory is free again
