"""Budgets: one user cannot take every session nor the upload budget."""

from __future__ import annotations

import numpy as np
import requests
from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config

from nninteractive_slicer.backends.remote import RemoteBackend
from nninteractive_slicer.core.wire import encode_frame, encode_image_chunk
from nninteractive_slicer.server.config import MIB

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
        with RemoteBackend(url, BOB_KEY, timeout=CLIENT_TIMEOUT_S) as bob:  # Bob's uploads still go through
            bob.set_image(image64)
            assert bob.stats.image_uploads == 1
