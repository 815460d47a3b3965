"""Chunked uploads: each verified against its digest before anyone can use it, then handed to the image cache.

Every upload is re-hashed on arrival, and a verified image is read-only down to its buffer: no chunk,
however late, can reach it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidPromptError, ServerBusyError
from ..interface import validate_image
from ..protocol.bodies import UploadStatus
from ..protocol.contract import ErrorCode
from ..protocol.wire import chunk_count, decode_image_chunk, image_digest
from .config import Limits
from .errors import ApiError
from .images import CachedImage, ImageCache, digest_mismatch
from .size_checks import check_image_geometry, too_large

log = logging.getLogger("nninteractive_slicer.server")


@dataclass(eq=False)
class _Pending:
    owner: str
    digest: str
    shape: tuple[int, int, int]
    dtype: str
    spacing: tuple[float, float, float]
    chunk_elements: int
    flat: np.ndarray
    received: set[int] = field(default_factory=set)
    touched: float = field(default_factory=time.monotonic)
    closed: bool = False  # completed or failed: its buffer takes no more chunks
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def chunks(self) -> int:
        return chunk_count(self.flat.size, self.chunk_elements)


class Uploads:
    """Chunked uploads in progress, per user and digest; their buffers count against a byte budget.

    A chunk is decoded first, then written under its upload's lock, and the chunk that completes the
    upload verifies and publishes it under that lock too: no chunk of an upload runs alongside its
    completion. A chunk for an image the user can already see is compared with it, never taken unread."""

    def __init__(self, cache: ImageCache, limits: Limits, budget_bytes: int, per_user_bytes: int | None = None,
                 admit: Callable[[tuple[int, int, int]], object] | None = None) -> None:
        self.cache, self.limits, self.budget = cache, limits, budget_bytes
        self.per_user = per_user_bytes or budget_bytes
        self.admit = admit  # raises if no session could ever hold an image of this shape
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(p.flat.nbytes for p in self._pending.values())

    def add_chunk(self, owner: str, digest: str, index: int, shape: tuple[int, int, int], dtype: str,
                  spacing: tuple[float, float, float], codec: str, chunk_elements: int,
                  payload: bytes) -> UploadStatus:
        """Decode one chunk into its upload; the last one verifies the digest and publishes the image."""
        nbytes = check_image_geometry(shape, dtype, self.limits)
        if self.admit is not None:
            self.admit(shape)  # at the first chunk, not after the whole image arrived
        if nbytes > self.per_user:
            raise ApiError(ErrorCode.TOO_LARGE, f"The image ({nbytes} bytes) is larger than one user may upload "
                                                     f"to this server at a time ({self.per_user} bytes).")
        itemsize = nbytes // int(np.prod(shape))
        if chunk_elements * itemsize > self.limits.chunk_bytes:
            raise too_large("upload chunk", chunk_elements * itemsize, self.limits.chunk_bytes)
        size = int(np.prod(shape))
        total = chunk_count(size, chunk_elements)
        if not 0 <= index < total:
            raise ApiError(ErrorCode.INVALID_INPUT,
                           f"Chunk {index} does not exist: this image has {total} chunks.")
        start = index * chunk_elements
        stop = min(start + chunk_elements, size)
        values = decode_image_chunk(payload, stop - start, dtype, codec)
        while True:
            image = self.cache.get(digest, owner)
            if image is not None:
                _check_chunk(image, shape, dtype, spacing, start, values)
                return UploadStatus(digest, total, total, True)
            pending = self._pending_for(owner, digest, shape, dtype, spacing, chunk_elements, nbytes)
            with pending.lock:
                if pending.closed:
                    continue  # completed (or failed) while this chunk decoded: look again
                pending.flat[start:stop] = values
                if index not in pending.received:  # progress: a chunk sent again keeps no upload alive
                    pending.received.add(index)
                    pending.touched = time.monotonic()
                if len(pending.received) < pending.chunks:
                    return UploadStatus(digest, len(pending.received), pending.chunks, False)
                pending.closed = True
                self._drop(owner, digest, pending)
                self._publish(pending)
                return UploadStatus(digest, pending.chunks, pending.chunks, True)

    def reap(self, max_age_s: float) -> int:
        """Forget uploads that saw no chunk for ``max_age_s``; returns how many."""
        cutoff = time.monotonic() - max_age_s
        with self._lock:
            stale = [k for k, p in self._pending.items() if p.touched < cutoff]
            for key in stale:
                del self._pending[key]
        return len(stale)

    def _pending_for(self, owner: str, digest: str, shape: tuple[int, int, int], dtype: str,
                     spacing: tuple[float, float, float], chunk_elements: int, nbytes: int) -> _Pending:
        key = (owner, digest)
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None and (pending.shape, pending.dtype, pending.spacing, pending.chunk_elements) == (
                shape, dtype, spacing, chunk_elements
            ):
                return pending
            self._pending.pop(key, None)  # a restarted upload with other parameters replaces the old one
            mine = sum(p.flat.nbytes for p in self._pending.values() if p.owner == owner)
            if mine + nbytes > self.per_user:
                raise ServerBusyError(f"Your uploads in progress hold {mine} bytes; one user may have at most "
                                      f"{self.per_user} bytes of uploads in progress: let them finish first.", 10)
            in_use = sum(p.flat.nbytes for p in self._pending.values())
            if in_use + nbytes > self.budget:
                raise ServerBusyError("The server is receiving too many images at once (from all users); try again "
                                      "shortly.", 10)
            pending = _Pending(owner, digest, shape, dtype, spacing, chunk_elements,
                               np.empty(int(np.prod(shape)), dtype=np.dtype(dtype).newbyteorder("<")))
            self._pending[key] = pending
            return pending

    def _drop(self, owner: str, digest: str, pending: _Pending) -> None:
        with self._lock:
            if self._pending.get((owner, digest)) is pending:
                del self._pending[(owner, digest)]

    def _publish(self, pending: _Pending) -> None:
        pending.flat.flags.writeable = False
        array = pending.flat.reshape(pending.shape)
        if image_digest(array, pending.spacing) != pending.digest:
            raise digest_mismatch("The uploaded image")
        try:
            validate_image(array, pending.spacing)
        except InvalidPromptError as exc:
            raise ApiError(ErrorCode.INVALID_INPUT, str(exc)) from exc
        self.cache.put(CachedImage(pending.digest, array, pending.spacing), pending.owner)
        log.info("image received", extra={"event": "image_uploaded", "user": pending.owner,
                                           "digest": pending.digest[:12], "shape": list(pending.shape),
                                           "dtype": pending.dtype, "bytes": array.nbytes})


def _check_chunk(image: CachedImage, shape: tuple[int, int, int], dtype: str, spacing: tuple[float, float, float],
                 start: int, values: np.ndarray) -> None:
    """A chunk sent to an image already held must hold exactly its voxels."""
    held = image.array.reshape(-1)[start : start + values.size]
    if (image.array.shape, image.array.dtype.name, image.spacing) != (shape, dtype, spacing) or \
            held.tobytes() != values.tobytes():
        raise digest_mismatch("This chunk")
