"""An image on its way to the server: hashed and compressed in one pass, sent in concurrent chunks, with progress.

Why one pass: the content address must be known before the client can ask whether the server already
holds the image, and compressing is several times slower than hashing. So the caller's thread hashes the
chunks in order while a small pool compresses the first ones from the same memory; when the server turns
out to hold the image, the look-ahead is dropped (little was wasted), otherwise its chunks go out at once
and the rest are compressed while earlier ones are on the wire. At most ``window`` compressed chunks wait
in memory, and the image itself is never copied (only one chunk at a time is shuffled).

zstd and zlib release the GIL while they compress, and so do hashlib and socket writes, so the threads
here overlap even inside 3D Slicer's Python.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..interface import UploadProgress
from ..protocol.bodies import ChunkHeader
from ..protocol.wire import DIGEST_TAG, chunk_ranges, encode_frame, encode_image_chunk, wire_dtype

# Small enough that the first chunk is on the wire within tens of milliseconds and a slow link still
# shows progress; large enough that per-request costs stay negligible. The server's limit caps it.
CHUNK_BYTES = 4 * 1024 * 1024
WORKERS = 3  # compressing threads, and as many concurrent requests


class EncodedImage:
    """One image cut into framed, compressed chunks for ``codec``; :attr:`digest` is its content address.

    Construct it on the thread that may block (it hashes the whole image); :meth:`send` uploads what the
    server lacks; :meth:`close` stops the look-ahead. ``image`` is read, never copied or changed.
    """

    def __init__(self, image: np.ndarray, spacing: tuple[float, float, float], codec: str, chunk_bytes: int,
                 workers: int = WORKERS) -> None:
        self.flat = np.ascontiguousarray(image, dtype=wire_dtype(image.dtype)).reshape(-1)
        self.codec = codec
        self.chunk_elements = max(1, min(chunk_bytes, CHUNK_BYTES) // self.flat.dtype.itemsize)
        self.ranges = list(chunk_ranges(self.flat.size, self.chunk_elements))
        self.shape = [int(n) for n in image.shape]
        self.header = ChunkHeader(self.shape, self.flat.dtype.name, [float(s) for s in spacing], codec,
                                  self.chunk_elements).to_json()
        self.window = 2 * workers
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nninteractive-compress")
        self._frames: list[Future[bytes] | None] = [None] * len(self.ranges)
        self._submitted = 0  # chunks handed to the pool
        self._taken = 0  # chunks handed to senders
        self._lock = threading.Lock()
        self._sent = 0
        self.frame_bytes = 0  # bytes of the frames sent, headers included
        self.digest = self._hash(spacing)

    @property
    def total_bytes(self) -> int:
        return self.flat.nbytes

    def progress(self) -> UploadProgress:
        with self._lock:
            return UploadProgress(self._sent, self.total_bytes)

    def send(self, put: Callable[[int, bytes], None]) -> None:
        """``put(index, frame)`` every chunk, ``workers`` at a time; raises the first failure after all stopped."""
        next_index = 0
        failure: list[BaseException] = []

        def sender() -> None:
            nonlocal next_index
            while True:
                with self._lock:
                    if failure or next_index >= len(self.ranges):
                        return
                    index, next_index = next_index, next_index + 1
                try:
                    frame = self._take(index)
                    put(index, frame)
                except BaseException as exc:  # handed to the caller below
                    with self._lock:
                        failure.append(exc)
                    return
                start, stop = self.ranges[index]
                with self._lock:
                    self._sent += (stop - start) * self.flat.dtype.itemsize
                    self.frame_bytes += len(frame)

        threads = [threading.Thread(target=sender, name="nninteractive-upload", daemon=True)
                   for _ in range(min(self._workers, len(self.ranges)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failure:
            raise failure[0]

    def close(self) -> None:
        """Drop chunks compressed ahead and stop compressing (the server held the image, or the upload failed)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._frames = [None] * len(self.ranges)

    # -- internals -----------------------------------------------------------------------------------
    def _hash(self, spacing: tuple[float, float, float]) -> str:
        """The digest of :func:`..protocol.wire.image_digest`, chunk by chunk while the first chunks compress."""
        meta = json.dumps([self.flat.dtype.name, self.shape, [float(s) for s in spacing]]).encode()
        digest = hashlib.sha256(DIGEST_TAG + b"\0" + meta + b"\0")
        self._fill_window()
        for start, stop in self.ranges:
            digest.update(memoryview(self.flat[start:stop]).cast("B"))
        return digest.hexdigest()

    def _fill_window(self) -> None:
        """Keep up to ``window`` chunks compressed or compressing beyond those taken for sending."""
        while self._submitted < min(len(self.ranges), self._taken + self.window):
            self._frames[self._submitted] = self._pool.submit(self._encode, self._submitted)
            self._submitted += 1

    def _take(self, index: int) -> bytes:
        """The frame of chunk ``index`` (senders take them in order, so it is always in the window)."""
        with self._lock:
            future = self._frames[index]
            self._frames[index] = None
            self._taken += 1
            self._fill_window()
        assert future is not None
        return future.result()

    def _encode(self, index: int) -> bytes:
        start, stop = self.ranges[index]
        return encode_frame(self.header, encode_image_chunk(self.flat[start:stop], self.codec))
