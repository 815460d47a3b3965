"""Chunk bodies in flight are counted per user (issue 24.3): 40 parallel 16 MiB chunk uploads by one user raised the
server's peak memory by 390-440 MB; now the bodies past the user's share wait unread."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests
from fixtures_remote import ALICE_KEY, BOB_KEY, ThreadedServer, server_config

from nninteractive_slicer.protocol.contract import Routes
from nninteractive_slicer.protocol.wire import FRAME_CONTENT_TYPE, encode_frame
from nninteractive_slicer.server.config import MIB

ALICE = {"Authorization": f"Bearer {ALICE_KEY}", "Content-Type": FRAME_CONTENT_TYPE}
BOB = {"Authorization": f"Bearer {BOB_KEY}", "Content-Type": FRAME_CONTENT_TYPE}
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class PeakRss:
    """The highest resident memory of this process (server and client) while the block runs, sampled every ms."""

    def __enter__(self) -> PeakRss:
        self.baseline = self.peak = rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def rise(self) -> int:
        return self.peak - self.baseline


def test_one_users_parallel_chunk_bodies_do_not_pile_up_in_memory(tiny_model_dir):
    # One 16 MiB chunk frame (incompressible, so it is refused only after it was read whole), sent 40 times at once;
    # the client shares the one bytes object, so what grows is the server.
    payload = np.random.default_rng(0).integers(0, 255, 16 * MIB, dtype=np.uint8).tobytes()
    frame = encode_frame({"shape": [64, 64, 64], "dtype": "float32", "spacing": [1, 1, 1], "codec": "zlib",
                          "chunk_elements": 4 * MIB}, payload)
    with ThreadedServer(server_config(tiny_model_dir)) as server:
        url = server.url + Routes.UPLOAD_CHUNK.url(digest="e" * 64, index=0)
        requests.put(url, data=frame, headers=ALICE, timeout=60)  # warm: buffers of one body exist already
        with PeakRss() as memory, ThreadPoolExecutor(40) as pool:
            replies = list(pool.map(lambda _: requests.put(url, data=frame, headers=ALICE, timeout=120), range(40)))
            bob = requests.put(url, data=frame, headers=BOB, timeout=60)  # another user is not held up
        assert {r.status_code for r in replies} == {400}, replies[0].text  # read whole, then refused as garbage
        assert bob.status_code == 400
    print(f"peak RSS rose by {memory.rise / MIB:.0f} MiB for 40 parallel 16 MiB chunk bodies")
    assert memory.rise < 200 * MIB, memory.rise / MIB
