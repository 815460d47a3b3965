"""Content-addressed images: a memory cache with an LRU byte budget, an optional on-disk cache that survives
restarts, and chunked uploads that are verified against their digest before anyone can use them.

Each image is stored once, but by default only the users who uploaded its voxels may see or bind it (its
owners): otherwise any key holder with an image could learn whether someone else had sent it. A server
started with ``--share-images`` lets everyone bind every image, so nobody sends an image twice. Every
upload is re-hashed on arrival, and a verified image is read-only down to its buffer: no chunk, however
late, can reach it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.protocol import ErrorCode
from ..core.wire import chunk_count, decode_image_chunk, image_digest
from ..errors import InvalidPromptError, ServerBusyError
from ..interface import IMAGE_DTYPES, validate_image
from .config import Limits
from .errors import ApiError
from .size_checks import check_image_geometry, too_large

log = logging.getLogger("nninteractive_slicer.server")

ORPHAN_AGE_S = 600.0  # a .json without its .npy this old is no save in progress


def digest_mismatch(what: str) -> ApiError:
    return ApiError(422, ErrorCode.DIGEST_MISMATCH, f"{what} does not match its digest; upload the image again.")


@dataclass(frozen=True, eq=False)
class CachedImage:
    """An image as verified on arrival; read-only, since every session that uses it shares the array.

    ``owners``: the users who sent its voxels (see the module's docstring)."""

    digest: str
    array: np.ndarray
    spacing: tuple[float, float, float]
    owners: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        array: object = self.array
        while isinstance(array, np.ndarray):  # the views' bases too: a write to a base would reach the view
            array.flags.writeable = False
            array = array.base


class ImageCache:
    """Images by digest, most recently used last; the memory budget evicts the least recently used.

    ``owner=None`` in a look-up means "anyone's" (a shared cache)."""

    def __init__(self, budget_bytes: int, disk_dir: Path | None = None, disk_budget_bytes: int = 0) -> None:
        self.budget = budget_bytes
        self._entries: OrderedDict[str, CachedImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._disk = Path(disk_dir) if disk_dir is not None else None
        self._disk_budget = disk_budget_bytes
        if self._disk is not None:
            self._disk.mkdir(parents=True, exist_ok=True)
            self._remove_leftovers()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def contains(self, digest: str, owner: str | None = None) -> bool:
        return self.get(digest, owner) is not None

    def get(self, digest: str, owner: str | None = None) -> CachedImage | None:
        with self._lock:
            image = self._entries.get(digest)
            if image is not None:
                self._entries.move_to_end(digest)
        if image is None:
            loaded = self._load(digest)
            image = self._insert(loaded) if loaded is not None else None
        if image is not None and owner is not None and owner not in image.owners and owner in self._disk_owners(digest):
            with self._lock:  # another server sharing the disk cache took this owner's upload
                image.owners.add(owner)
        if image is None or (owner is not None and owner not in image.owners):
            return None
        return image

    def put(self, image: CachedImage, owner: str | None = None) -> CachedImage:
        """Keep ``image`` (or the copy already held) with ``owner`` among its owners; returns the one kept."""
        kept = self._insert(image)
        with self._lock:
            new_owner = owner is not None and owner not in kept.owners
            if new_owner:
                kept.owners.add(owner)  # type: ignore[arg-type]
        if self._disk is not None:
            self._save(kept, new_owner)
        return kept

    def _insert(self, image: CachedImage) -> CachedImage:
        with self._lock:
            held = self._entries.get(image.digest)
            if held is not None:
                self._entries.move_to_end(image.digest)
                return held
            self._entries[image.digest] = image
            self._bytes += image.array.nbytes
            while self._bytes > self.budget and len(self._entries) > 1:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.array.nbytes
                log.info("image evicted from memory", extra={"event": "image_evicted", "digest": old.digest[:12]})
            return image

    # -- disk --------------------------------------------------------------------------------------
    def _save(self, image: CachedImage, owners_changed: bool) -> None:
        disk = self._disk_folder()
        npy, meta = disk / f"{image.digest}.npy", disk / f"{image.digest}.json"
        exists = npy.is_file()
        try:
            if not exists or owners_changed:  # with the owners other servers sharing the folder recorded
                owners = image.owners | self._disk_owners(image.digest)
                _write_atomically(meta, json.dumps({"spacing": list(image.spacing), "owners": sorted(owners)}).encode())
            if exists:
                os.utime(npy)
                return
            _write_atomically(npy, None, image.array)
        except OSError as exc:
            log.warning("could not write the image to the disk cache: %s", exc)
            return
        self._trim_disk()

    def _load(self, digest: str) -> CachedImage | None:
        if self._disk is None:
            return None
        npy, meta = self._disk / f"{digest}.npy", self._disk / f"{digest}.json"
        if not npy.is_file():
            return None
        try:
            info = json.loads(meta.read_text())
            sk, sj, si = (float(s) for s in info["spacing"])
            spacing = (sk, sj, si)
            owners = {str(o) for o in info.get("owners", [])}
            array = _read_npy(npy)
            if image_digest(array, spacing) != digest:
                raise ValueError("content does not match its digest")
            os.utime(npy)
        except Exception as exc:  # noqa: BLE001 - any damage (a lying header: MemoryError) drops the entry
            log.warning("dropping unreadable disk-cache entry %s: %s: %s", digest[:12], type(exc).__name__, exc)
            npy.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            return None
        return CachedImage(digest, array, spacing, owners)

    def _disk_owners(self, digest: str) -> set[str]:
        """The owners recorded next to ``digest`` on disk: with a folder shared by several servers (Ray
        replicas), an owner one of them added reaches the others, whose memory holds the image already."""
        if self._disk is None:
            return set()
        try:
            return {str(o) for o in json.loads((self._disk / f"{digest}.json").read_text()).get("owners", [])}
        except (OSError, ValueError, AttributeError):
            return set()

    def _disk_folder(self) -> Path:
        assert self._disk is not None, "only with a disk cache"
        return self._disk

    def _remove_leftovers(self) -> None:
        """Saves that a crash or a full disk interrupted leave ``*.tmp`` files and lone halves of entries."""
        removed = size = 0
        now = time.time()
        for path in list(self._disk_folder().iterdir()):
            try:
                stat = path.stat()
                if path.suffix == ".tmp":
                    stale = not _writer_alive(path)
                elif path.suffix in (".json", ".npy"):
                    other = path.with_suffix(".npy" if path.suffix == ".json" else ".json")
                    stale = not other.exists() and now - stat.st_mtime > ORPHAN_AGE_S
                else:
                    continue
                if stale:
                    path.unlink()
                    removed, size = removed + 1, size + stat.st_size
            except OSError:
                continue
        if removed:
            log.warning("disk cache: removed %d leftover files (%d bytes) of interrupted saves", removed, size,
                        extra={"event": "disk_cache_leftovers", "files": removed, "bytes": size})

    def _trim_disk(self) -> None:
        """Keep the whole folder (leftovers and metadata included) within the budget, oldest images first."""
        files = [(p, p.stat()) for p in self._disk_folder().iterdir() if p.is_file()]
        total = sum(st.st_size for _, st in files)
        images = sorted((st.st_mtime, p, st.st_size) for p, st in files if p.suffix == ".npy")
        for _, path, nbytes in images[:-1]:  # never the newest
            if total <= self._disk_budget:
                break
            meta = path.with_suffix(".json")
            total -= nbytes + (meta.stat().st_size if meta.is_file() else 0)
            path.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes | None, array: np.ndarray | None = None) -> None:
    """Write ``data`` (or ``array`` as .npy) so that ``path`` appears only complete."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            if array is not None:
                np.save(f, array, allow_pickle=False)
            elif data is not None:
                f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _writer_alive(tmp: Path) -> bool:
    """Whether the process that writes ``NAME.PID.THREAD.tmp`` still runs (another server may share the folder)."""
    try:
        pid = int(tmp.name.split(".")[-3])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False  # not one of this server's saves: it has made none yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_npy(path: Path) -> np.ndarray:
    """Load a cached image, checking its header against the file before allocating anything."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        data_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if len(shape) == 3 else -1
        if fortran or dtype.name not in IMAGE_DTYPES or data_bytes != path.stat().st_size - f.tell():
            raise ValueError(f"the header ({list(shape)}, {dtype}) does not describe this file")
    return np.load(path, allow_pickle=False)


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


@dataclass(frozen=True)
class UploadProgress:
    digest: str
    received: int
    chunk_count: int
    complete: bool


class Uploads:
    """Chunked uploads in progress, per user and digest; their buffers count against a byte budget.

    A chunk is decoded first, then written under its upload's lock, and the chunk that completes the
    upload verifies and publishes it under that lock too: no chunk of an upload runs alongside its
    completion. A chunk for an image the user can already see is compared with it, never taken unread."""

    def __init__(self, cache: ImageCache, limits: Limits, budget_bytes: int, per_user_bytes: int | None = None,
                 share_images: bool = False, admit: Callable[[tuple[int, int, int]], object] | None = None) -> None:
        self.cache, self.limits, self.budget, self.share_images = cache, limits, budget_bytes, share_images
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
                  payload: bytes) -> UploadProgress:
        """Decode one chunk into its upload; the last one verifies the digest and publishes the image."""
        nbytes = check_image_geometry(shape, dtype, self.limits)
        if self.admit is not None:
            self.admit(shape)  # at the first chunk, not after the whole image arrived
        if nbytes > self.per_user:
            raise ApiError(413, ErrorCode.TOO_LARGE, f"The image ({nbytes} bytes) is larger than one user may upload "
                                                     f"to this server at a time ({self.per_user} bytes).")
        itemsize = nbytes // int(np.prod(shape))
        if chunk_elements * itemsize > self.limits.chunk_bytes:
            raise too_large("upload chunk", chunk_elements * itemsize, self.limits.chunk_bytes)
        size = int(np.prod(shape))
        total = chunk_count(size, chunk_elements)
        if not 0 <= index < total:
            raise ApiError(422, ErrorCode.INVALID_INPUT,
                           f"Chunk {index} does not exist: this image has {total} chunks.")
        start = index * chunk_elements
        stop = min(start + chunk_elements, size)
        values = decode_image_chunk(payload, stop - start, dtype, codec)
        while True:
            image = self.cache.get(digest, None if self.share_images else owner)
            if image is not None:
                _check_chunk(image, shape, dtype, spacing, start, values)
                return UploadProgress(digest, total, total, True)
            pending = self._pending_for(owner, digest, shape, dtype, spacing, chunk_elements, nbytes)
            with pending.lock:
                if pending.closed:
                    continue  # completed (or failed) while this chunk decoded: look again
                pending.flat[start:stop] = values
                if index not in pending.received:  # progress: a chunk sent again keeps no upload alive
                    pending.received.add(index)
                    pending.touched = time.monotonic()
                if len(pending.received) < pending.chunks:
                    return UploadProgress(digest, len(pending.received), pending.chunks, False)
                pending.closed = True
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
            raise ApiError(422, ErrorCode.INVALID_INPUT, str(exc)) from exc
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
