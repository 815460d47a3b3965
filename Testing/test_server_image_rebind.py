"""A new image bound while prompts without a revision are queued on the session (issue 24.3): the bind succeeds,
the prompts get a clear 4xx or run on one image whole, never a 500, and the session goes on."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S, ThreadedServer, hold_device, server_config
from synthetic import mr_like_image
from test_server_fairness import wait_for_queue

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.protocol.contract import Routes
from nninteractive_slicer.protocol.wire import decode_frame, image_digest

ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}


def test_binding_an_image_while_prompts_are_queued_never_breaks_the_session(tiny_model_dir, image64):
    """Made to happen on purpose: the device is held while the bind and then three prompts queue behind it, so the
    prompts reach the device between the bind's two halves (image handed over, preprocessing awaited)."""
    other = mr_like_image((48, 64, 64), seed=3)
    with ThreadedServer(server_config(tiny_model_dir)) as server, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as uploader:
        alice.set_image(image64)
        uploader.set_image(other)  # now on the server, Alice's
        session_id = alice._server_session_id
        assert session_id
        url = server.url
        release = threading.Event()
        held = hold_device(server, release)
        with ThreadPoolExecutor(4) as pool:
            bind = pool.submit(requests.post, url + Routes.SET_IMAGE.url(session_id=session_id), headers=ALICE,
                               json={"digest": image_digest(other, (1.0, 1.0, 1.0))}, timeout=120)
            wait_for_queue(server, held + 1)
            prompts = [pool.submit(requests.post, url + Routes.PROMPT.url(session_id=session_id), headers=ALICE,
                                   json={"kind": "point", "coord": [20 + i, 30, 30], "positive": True}, timeout=120)
                       for i in range(3)]
            wait_for_queue(server, held + 4)
            time.sleep(0.1)
            release.set()
            assert bind.result().status_code == 200, bind.result().text
            statuses = [p.result().status_code for p in prompts]
        assert all(s < 500 for s in statuses), [p.result().text for p in prompts]
        after = requests.post(url + Routes.PROMPT.url(session_id=session_id), headers=ALICE, timeout=120,
                              json={"kind": "point", "coord": [24, 32, 32], "positive": True})
        assert after.status_code == 200, after.text
        state = requests.get(url + Routes.SESSION_STATE.url(session_id=session_id), headers=ALICE, timeout=30).json()
        assert state["shape"] == [48, 64, 64]
        mask = requests.get(url + Routes.GET_MASK.url(session_id=session_id), headers=ALICE, timeout=30)
        assert mask.status_code == 200 and decode_frame(mask.content)[0]["shape"] == [48, 64, 64]
