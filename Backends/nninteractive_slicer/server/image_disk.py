"""Where the server keeps images and who holds them: in this process only, or in ``--cache-dir`` too.

``--cache-dir`` holds ``images/NAME.img`` (the voxels and their spacing, sealed: :mod:`.image_crypto`)
and ``owners/TAG/NAME``, one marker per user who holds the image (TAG: a hash of the user's name; the
marker holds the name and the digest, sealed; its mtime is that user's last use). NAME is the image's
digest, or with a key a keyed hash of it (:meth:`.image_crypto.Sealer.name`). The markers are the truth about
ownership for every server that shares the folder (Ray replicas): a replica asks the folder, never its
own memory, whether a user holds an image. Writes go marker first, then image; removals marker first, then
image: so an image file without a marker is always the rest of an interrupted removal (never served,
removed at start), and a marker without its image a save in progress or cut short (its user uploads again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..interface import IMAGE_DTYPES
from .image_crypto import Sealer, Unreadable

log = logging.getLogger("nninteractive_slicer.server")

ORPHAN_AGE_S = 600.0  # a marker without its image this old is no save in progress
Spacing = tuple[float, float, float]


def user_tag(user: str) -> str:
    """A user's folder name: any user name, as a fixed-length file name."""
    return hashlib.sha256(user.encode()).hexdigest()[:32]


class MemoryHoldings:
    """Who holds which image, for a server without a disk cache: (tag, digest) -> (user, last use)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def holds(self, tag: str, digest: str) -> bool:
        return (tag, digest) in self._held

    def holders(self, digest: str) -> set[str]:
        with self._lock:
            return {t for t, d in self._held if d == digest}

    def hold(self, user: str, digest: str) -> None:
        with self._lock:
            self._held[(user_tag(user), digest)] = (user, time.time())

    def touch(self, tag: str, digest: str) -> None:
        with self._lock:
            held = self._held.get((tag, digest))
            if held is not None:
                self._held[(tag, digest)] = (held[0], time.time())

    def release(self, tag: str, digest: str) -> bool:
        with self._lock:
            return self._held.pop((tag, digest), None) is not None

    def markers(self) -> list[tuple[str, str, float]]:
        with self._lock:
            return [(t, d, used) for (t, d), (_, used) in self._held.items()]

    def user(self, tag: str, digest: str) -> str | None:
        held = self._held.get((tag, digest))
        return held[0] if held is not None else None


class DiskCache:
    """The files of ``--cache-dir`` (see the module's docstring), within a byte budget kept by the caller."""

    def __init__(self, folder: Path, budget_bytes: int, sealer: Sealer) -> None:
        self.folder, self.budget, self.sealer = Path(folder), budget_bytes, sealer
        self.images, self.owners = self.folder / "images", self.folder / "owners"
        self.images.mkdir(parents=True, exist_ok=True)
        self.owners.mkdir(exist_ok=True)
        self._remove_leftovers()

    # -- holdings: the same methods as MemoryHoldings -------------------------------------------------------
    def holds(self, tag: str, digest: str) -> bool:
        return os.path.isfile(self._marker(tag, digest))

    def holders(self, digest: str) -> set[str]:
        name = self.sealer.name(digest)
        return {tag for tag in _names(self.owners) if os.path.isfile(self.owners / tag / name)}

    def hold(self, user: str, digest: str) -> None:
        folder = self.owners / user_tag(user)
        folder.mkdir(exist_ok=True)
        self._write(folder / self.sealer.name(digest), [json.dumps({"user": user, "digest": digest}).encode()])

    def touch(self, tag: str, digest: str) -> None:
        try:
            os.utime(self._marker(tag, digest))
        except FileNotFoundError:
            pass

    def release(self, tag: str, digest: str) -> bool:
        try:
            self._marker(tag, digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def markers(self) -> list[tuple[str, str, float]]:
        """(tag, digest, last use) of every marker this server can read."""
        found = []
        for tag in _names(self.owners):
            for name in _names(self.owners / tag):
                if name.endswith(".tmp"):
                    continue
                path = self.owners / tag / name
                try:
                    used = path.stat().st_mtime
                except FileNotFoundError:
                    continue
                digest = name if not self.sealer.sealed else (self._read_marker(path) or {}).get("digest")
                if isinstance(digest, str):
                    found.append((tag, digest, used))
        return found

    def user(self, tag: str, digest: str) -> str | None:
        user = (self._read_marker(self._marker(tag, digest)) or {}).get("user")
        return user if isinstance(user, str) else None

    # -- images ------------------------------------------------------------------------------------------
    def has(self, digest: str) -> bool:
        return os.path.isfile(self._image(digest))

    def save(self, digest: str, array: np.ndarray, spacing: Spacing) -> None:
        meta = json.dumps({"shape": list(array.shape), "dtype": array.dtype.name, "spacing": list(spacing)}).encode()
        voxels = memoryview(np.ascontiguousarray(array)).cast("B")
        self._write(self._image(digest), [len(meta).to_bytes(4, "big"), meta, voxels])

    def load(self, digest: str) -> tuple[np.ndarray, Spacing] | None:
        """The image's voxels and spacing, or None if there is no such file; raises if it is unreadable."""
        path = self._image(digest)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return None
        with f:
            data = self.sealer.read(f, self.sealer.name(digest), os.fstat(f.fileno()).st_size)
        os.utime(path)
        size = int.from_bytes(data[:4], "big")
        meta = json.loads(bytes(data[4:4 + size]))
        shape, dtype = tuple(int(n) for n in meta["shape"]), np.dtype(meta["dtype"]).newbyteorder("<")
        sk, sj, si = (float(s) for s in meta["spacing"])
        if len(shape) != 3 or dtype.name not in IMAGE_DTYPES or \
                int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data) - 4 - size:
            raise Unreadable(f"its header ({list(shape)}, {dtype}) does not describe its contents")
        return np.frombuffer(data, dtype, offset=4 + size).reshape(shape), (sk, sj, si)

    def drop(self, digest: str) -> None:
        self._image(digest).unlink(missing_ok=True)

    def sizes(self) -> dict[str, tuple[int, float]]:
        """Bytes and last write or read of every image file somebody holds, by digest."""
        digests = {self.sealer.name(digest): digest for _, digest, _ in self.markers()}
        found = {}
        for name in self._image_names():
            if name in digests:
                try:
                    stat = (self.images / f"{name}.img").stat()
                except FileNotFoundError:
                    continue
                found[digests[name]] = (stat.st_size, stat.st_mtime)
        return found

    def remove_unheld(self) -> int:
        """Remove image files that no marker claims (the rest of an interrupted removal); returns how many."""
        held = {name for tag in _names(self.owners) for name in _names(self.owners / tag)}
        removed = 0
        for name in self._image_names() - held:
            (self.images / f"{name}.img").unlink(missing_ok=True)
            removed += 1
        return removed

    def _marker(self, tag: str, digest: str) -> Path:
        return self.owners / tag / self.sealer.name(digest)

    def _image(self, digest: str) -> Path:
        return self.images / f"{self.sealer.name(digest)}.img"

    def _image_names(self) -> set[str]:
        return {name[:-4] for name in _names(self.images) if name.endswith(".img")}

    def _read_marker(self, path: Path) -> dict | None:
        """A marker's contents, or None if this server cannot read it (another key, or none; damaged)."""
        try:
            with open(path, "rb") as f:
                found = json.loads(self.sealer.read(f, path.name, os.fstat(f.fileno()).st_size))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    # -- writing -----------------------------------------------------------------------------------------
    def _write(self, path: Path, parts: Iterable[bytes | memoryview]) -> None:
        """Write ``path`` so that it appears only complete (sealed under its own name)."""
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as f:
                self.sealer.write(f, path.name.removesuffix(".img"), parts)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _remove_leftovers(self) -> None:
        """Saves that a crash or a full disk interrupted leave ``*.tmp`` files and markers without images;
        an interrupted removal leaves images without markers; a server with another key (or none) left
        markers this one cannot read; an older version of the server left files of its own format at the
        top. None of them can be served: remove them."""
        removed = size = unreadable = 0
        now = time.time()
        images = self._image_names()
        paths = [p for p in self.folder.iterdir() if p.suffix in (".npy", ".json", ".tmp")] + \
                [p for p in self.images.iterdir() if p.suffix == ".tmp"] + \
                [p for tag in self.owners.iterdir() if tag.is_dir() for p in tag.iterdir()]
        for path in paths:
            try:
                stat = path.stat()
                if path.suffix == ".tmp":
                    stale = not _writer_alive(path)
                elif path.parent.parent == self.owners:
                    foreign = self._read_marker(path) is None
                    unreadable += foreign
                    stale = foreign or (path.name not in images and now - stat.st_mtime > ORPHAN_AGE_S)
                else:
                    stale = True  # the old format
                if stale:
                    path.unlink()
                    removed, size = removed + 1, size + stat.st_size
            except OSError:
                continue
        unheld = self.remove_unheld()
        if removed or unheld:
            log.warning("disk cache: removed %d leftover files (%d bytes) of interrupted saves, %d unreadable "
                        "markers (another key, or none) and %d images of interrupted removals", removed - unreadable,
                        size, unreadable, unheld, extra={"event": "disk_cache_leftovers", "files": removed,
                                                         "bytes": size, "unreadable": unreadable, "images": unheld})


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


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
