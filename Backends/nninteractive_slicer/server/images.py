"""Content-addressed images: a memory cache with an LRU byte budget, an optional on-disk cache that survives
restarts, and chunked uploads that are verified against their digest before anyone can use them.

The cache is shared by all users: an image someone already sent is never sent again. Every upload is
re-hashed on arrival, so nobody can plant other voxels under an image's address.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.protocol import ErrorCode
from ..core.wire import chunk_count, decode_image_chunk, image_digest
from ..errors import InvalidPromptError, ServerBusyError
from ..interface import validate_image
from .config import Limits
from .errors import ApiError
from .size_checks import check_image_geometry, too_large

log = logging.getLogger("nninteractive_slicer.server")


@dataclass(frozen=True, eq=False)
class CachedImage:
    """An image as verified on arrival; read-only, since every session that uses it shares the array."""

    digest: str
    array: np.ndarray
    spacing: tuple[float, float, float]

    def __post_init__(self) -> None:
        self.array.flags.writeable = False


class ImageCache:
    """Images by digest, most recently used last; the memory budget evicts the least recently used."""

    def __init__(self, budget_bytes: int, disk_dir: Path | None = None, disk_budget_bytes: int = 0) -> None:
        self.budget = budget_bytes
        self._entries: OrderedDict[str, CachedImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._disk = Path(disk_dir) if disk_dir is not None else None
        self._disk_budget = disk_budget_bytes
        if self._disk is not None:
            self._disk.mkdir(parents=True, exist_ok=True)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def contains(self, digest: str) -> bool:
        with self._lock:
            if digest in self._entries:
                return True
        return self._disk is not None and (self._disk / f"{digest}.npy").is_file()

    def get(self, digest: str) -> CachedImage | None:
        with self._lock:
            image = self._entries.get(digest)
            if image is not None:
                self._entries.move_to_end(digest)
                return image
        image = self._load(digest)
        if image is not None:
            self._insert(image)
        return image

    def put(self, image: CachedImage) -> None:
        self._insert(image)
        if self._disk is not None:
            self._save(image)

    def _insert(self, image: CachedImage) -> None:
        with self._lock:
            if image.digest in self._entries:
                self._entries.move_to_end(image.digest)
                return
            self._entries[image.digest] = image
            self._bytes += image.array.nbytes
            while self._bytes > self.budget and len(self._entries) > 1:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.array.nbytes
                log.info("image evicted from memory", extra={"event": "image_evicted", "digest": old.digest[:12]})

    # -- disk --------------------------------------------------------------------------------------
    def _save(self, image: CachedImage) -> None:
        npy, meta = self._disk / f"{image.digest}.npy", self._disk / f"{image.digest}.json"
        if npy.is_file():
            os.utime(npy)
            return
        tmp = npy.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            meta.write_text(json.dumps({"spacing": list(image.spacing)}))
            with open(tmp, "wb") as f:
                np.save(f, image.array, allow_pickle=False)
            os.replace(tmp, npy)  # the .npy appears only complete
        except OSError as exc:
            log.warning("could not write the image to the disk cache: %s", exc)
            tmp.unlink(missing_ok=True)
            return
        self._trim_disk()

    def _load(self, digest: str) -> CachedImage | None:
        if self._disk is None:
            return None
        npy, meta = self._disk / f"{digest}.npy", self._disk / f"{digest}.json"
        if not npy.is_file():
            return None
        try:
            spacing = tuple(float(s) for s in json.loads(meta.read_text())["spacing"])
            array = np.load(npy, allow_pickle=False)
            if image_digest(array, spacing) != digest:
                raise ValueError("content does not match its digest")
            os.utime(npy)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("dropping unreadable disk-cache entry %s: %s", digest[:12], exc)
            npy.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            return None
        return CachedImage(digest, array, spacing)  # type: ignore[arg-type]

    def _trim_disk(self) -> None:
        files = sorted(self._disk.glob("*.npy"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for path in files[:-1]:  # never the newest
            if total <= self._disk_budget:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)


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
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def chunks(self) -> int:
        return chunk_count(self.flat.size, self.chunk_elements)


@dataclass(frozen=True)
class UploadProgress:
    digest: str
    received: int
    chunk_count: int
    complete: bool


class Uploads:
    """Chunked uploads in progress, per user and digest; their buffers count against a byte budget."""

    def __init__(self, cache: ImageCache, limits: Limits, budget_bytes: int) -> None:
        self.cache, self.limits, self.budget = cache, limits, budget_bytes
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(p.flat.nbytes for p in self._pending.values())

    def add_chunk(self, owner: str, digest: str, index: int, shape: tuple[int, int, int], dtype: str,
                  spacing: tuple[float, float, float], codec: str, chunk_elements: int,
                  payload: bytes) -> UploadProgress:
        """Decode one chunk into its upload; the last one verifies the digest and publishes the image."""
        nbytes = check_image_geometry(shape, dtype, self.limits)
        itemsize = nbytes // int(np.prod(shape))
        if chunk_elements * itemsize > self.limits.chunk_bytes:
            raise too_large("upload chunk", chunk_elements * itemsize, self.limits.chunk_bytes)
        total = chunk_count(int(np.prod(shape)), chunk_elements)
        if not 0 <= index < total:
            raise ApiError(422, ErrorCode.INVALID_INPUT,
                           f"Chunk {index} does not exist: this image has {total} chunks.")
        if self.cache.contains(digest):
            return UploadProgress(digest, total, total, True)
        pending = self._pending_for(owner, digest, shape, dtype, spacing, chunk_elements, nbytes)
        start = index * chunk_elements
        stop = min(start + chunk_elements, pending.flat.size)
        values = decode_image_chunk(payload, stop - start, dtype, codec)
        with pending.lock:
            pending.flat[start:stop] = values
            pending.received.add(index)
            pending.touched = time.monotonic()
            done = len(pending.received) == pending.chunks
        if not done:
            return UploadProgress(digest, len(pending.received), pending.chunks, False)
        self._drop(owner, digest, pending)
        self._publish(pending)
        return UploadProgress(digest, pending.chunks, pending.chunks, True)

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
            in_use = sum(p.flat.nbytes for p in self._pending.values())
            if in_use + nbytes > self.budget:
                raise ServerBusyError("The server is receiving too many images at once; try again shortly.", 10)
            pending = _Pending(owner, digest, shape, dtype, spacing, chunk_elements,
                               np.empty(int(np.prod(shape)), dtype=np.dtype(dtype).newbyteorder("<")))
            self._pending[key] = pending
            return pending

    def _drop(self, owner: str, digest: str, pending: _Pending) -> None:
        with self._lock:
            if self._pending.get((owner, digest)) is pending:
                del self._pending[(owner, digest)]

    def _publish(self, pending: _Pending) -> None:
        array = pending.flat.reshape(pending.shape)
        if image_digest(array, pending.spacing) != pending.digest:
            raise ApiError(422, ErrorCode.DIGEST_MISMATCH,
                           "The uploaded image does not match its digest; upload it again.")
        try:
            validate_image(array, pending.spacing)
        except InvalidPromptError as exc:
            raise ApiError(422, ErrorCode.INVALID_INPUT, str(exc)) from exc
        self.cache.put(CachedImage(pending.digest, array, pending.spacing))
        log.info("image received", extra={"event": "image_uploaded", "user": pending.owner,
                                           "digest": pending.digest[:12], "shape": list(pending.shape),
                                           "dtype": pending.dtype, "bytes": array.nbytes})
