"""Content-addressed images: held in memory within a byte budget, optionally on disk (:mod:`.image_disk`),
each held by the users who sent its voxels, for as long as they use it and the retention after.

Each image is stored once, but by default only its holders may see or bind it: otherwise any key holder
with an image could learn whether someone else had sent it. So a look-up asks "does this user hold this
digest?" first, and for any other user takes the very same path whether or not the image is here: nobody
else's entry is consulted. A server started with ``--share-images`` lets everyone bind every image.

Budgets are shared fairly: when memory or disk is full, the image that goes is the least recently used
one of the user who holds the most bytes, so one user's uploads never flush another's images. An image
goes ``retention_s`` after its holders' last use (or when they delete it), from memory and disk; the
audit log (:mod:`.audit`) records who uploaded, used and deleted which image.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from starlette.concurrency import run_in_threadpool

from ..protocol.contract import ErrorCode
from ..protocol.wire import image_digest
from .audit import AuditLog
from .errors import ApiError
from .image_crypto import Sealer
from .image_disk import DiskCache, MemoryHoldings, user_tag

log = logging.getLogger("nninteractive_slicer.server")

DEFAULT_RETENTION_S = 10 * 3600.0  # a working day


def digest_mismatch(what: str) -> ApiError:
    return ApiError(ErrorCode.DIGEST_MISMATCH, f"{what} does not match its digest; upload the image again.")


@dataclass(frozen=True, eq=False)
class CachedImage:
    """An image as verified on arrival; read-only, since every session that uses it shares the array.

    ``holders``: tags of the users this process knows hold it (what its memory is charged to)."""

    digest: str
    array: np.ndarray
    spacing: tuple[float, float, float]
    holders: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        array: object = self.array
        while isinstance(array, np.ndarray):  # the views' bases too: a write to a base would reach the view
            array.flags.writeable = False
            array = array.base


def fair_victim(items: Iterable[tuple[str, set[str], int]], keep: str) -> str | None:
    """Which of ``items`` (key, holders, bytes; least recently used first) to let go: the least recently used
    one of the holder charged the most bytes (an image counts fully for each of its holders); never ``keep``."""
    items = list(items)
    charges: dict[str, int] = defaultdict(int)
    for _, holders, nbytes in items:
        for tag in holders or {""}:
            charges[tag] += nbytes
    candidates = [(key, holders or {""}) for key, holders, _ in items if key != keep]
    if not candidates:
        return None
    top = max(charges[tag] for _, holders in candidates for tag in holders)
    return next(key for key, holders in candidates if any(charges[tag] == top for tag in holders))


class ImageCache:
    """Images by digest and who holds them. ``user=None`` in :meth:`get` means "anyone's" (internal use).

    With a disk cache, ownership lives in the folder (:class:`.image_disk.DiskCache`), so every server
    sharing it (Ray replicas) agrees on who holds what: :meth:`status`, :meth:`get`, :meth:`use`,
    :meth:`put`, :meth:`delete` and :meth:`expire` are the whole API."""

    def __init__(self, budget_bytes: int, disk_dir: Path | None = None, disk_budget_bytes: int = 0, *,
                 key: bytes | None = None, share_images: bool = False,
                 retention_s: float = DEFAULT_RETENTION_S, audit: AuditLog | None = None) -> None:
        self.budget, self.share_images, self.retention_s = budget_bytes, share_images, retention_s
        self.audit = audit or AuditLog()
        self._entries: OrderedDict[str, CachedImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._disk = DiskCache(disk_dir, disk_budget_bytes, Sealer(key)) if disk_dir is not None else None
        self._holdings: DiskCache | MemoryHoldings = self._disk or MemoryHoldings()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def sees(self, digest: str, user: str) -> bool:
        """Whether ``user`` may bind the image: they hold it (or, sharing, anyone does). For an image this
        user does not hold, the same steps run whether or not someone else does (unless sharing)."""
        return self._holdings.holds(user_tag(user), digest) or (
            self.share_images and bool(self._holdings.holders(digest)))

    def status(self, digest: str, user: str) -> bool:
        """Whether ``user`` can bind the image now without uploading it."""
        if not self.sees(digest, user):
            return False
        return digest in self._entries or (self._disk is not None and self._disk.has(digest))

    def get(self, digest: str, user: str | None = None) -> CachedImage | None:
        if user is not None and not self.sees(digest, user):
            return None
        with self._lock:
            image = self._entries.get(digest)
            if image is not None:
                self._entries.move_to_end(digest)
        return image if image is not None else self._load(digest)

    def use(self, digest: str, user: str, session: str) -> CachedImage | None:
        """The image for ``user``'s session, as a use: it restarts the user's retention and is audited."""
        image = self.get(digest, user)
        if image is None:
            return None
        tag = user_tag(user)
        if self._holdings.holds(tag, digest):
            self._holdings.touch(tag, digest)
        else:  # a shared image: its users hold it too, until they delete it or stop using it
            self._holdings.hold(user, digest)
        with self._lock:
            image.holders.add(tag)
        self.audit.record("used", user, digest, session=session[:8])
        return image

    def put(self, image: CachedImage, owner: str) -> CachedImage:
        """Keep ``image`` (or the copy already held) for ``owner``; returns the one kept. The disk copy is
        written in any case, so the reply takes as long whether or not another user sent the image first."""
        tag = user_tag(owner)
        self._holdings.hold(owner, image.digest)  # marker first (see :mod:`.image_disk`)
        kept = self._insert(image, tag)
        if self._disk is not None:
            try:
                self._disk.save(kept.digest, kept.array, kept.spacing)
            except OSError as exc:
                log.warning("could not write the image to the disk cache: %s", exc)
            else:
                self._trim_disk(kept.digest)
        self.audit.record("uploaded", owner, image.digest)
        return kept

    def delete(self, digest: str, user: str) -> bool:
        """Let ``user``'s hold on the image go; the image goes from memory and disk once nobody holds it.
        False if the user did not hold it (the same steps whether or not someone else does)."""
        tag = user_tag(user)
        if not self._holdings.release(tag, digest):
            return False
        self.audit.record("deleted", user, digest)
        self._forget_if_unheld(digest, tag)
        return True

    def expire(self, in_use: Iterable[tuple[str, str]] = ()) -> int:
        """Let go of holds unused for ``retention_s`` (those of ``in_use``, (user, digest) pairs of live
        sessions, are used now), and of images nobody holds; returns how many holds went."""
        busy = {(user_tag(user), digest) for user, digest in in_use}
        for tag, digest in busy:
            self._holdings.touch(tag, digest)
        cutoff = time.time() - self.retention_s
        expired = 0
        for tag, digest, used in self._holdings.markers():
            if used < cutoff and (tag, digest) not in busy:
                user = self._holdings.user(tag, digest) or f"#{tag}"
                if self._holdings.release(tag, digest):
                    expired += 1
                    self.audit.record("expired", user, digest)
                    self._forget_if_unheld(digest, tag)
        for digest in list(self._entries):  # released elsewhere (another replica), or never held
            self._forget_if_unheld(digest)
        if self._disk is not None:
            self._disk.remove_unheld()
        return expired

    # -- memory ------------------------------------------------------------------------------------
    def _insert(self, image: CachedImage, tag: str | None) -> CachedImage:
        with self._lock:
            held = self._entries.get(image.digest)
            if held is not None:
                self._entries.move_to_end(image.digest)
            else:
                held = self._entries[image.digest] = image
                self._bytes += image.array.nbytes
            if tag is not None:
                held.holders.add(tag)
            while self._bytes > self.budget:
                victim = fair_victim(((d, e.holders, e.array.nbytes) for d, e in self._entries.items()),
                                     image.digest)
                if victim is None:
                    break
                old = self._entries.pop(victim)
                self._bytes -= old.array.nbytes
                log.info("image evicted from memory", extra={"event": "image_evicted", "digest": victim[:12]})
                if self._disk is None:  # gone from the server: so are its holds
                    self._release_all(victim)
            return held

    def _forget_if_unheld(self, digest: str, released: str | None = None) -> None:
        """Drop the image from memory and disk if nobody holds it any more."""
        if self._holdings.holders(digest):
            with self._lock:
                entry = self._entries.get(digest)
                if entry is not None and released is not None:
                    entry.holders.discard(released)
            return
        with self._lock:
            entry = self._entries.pop(digest, None)
            if entry is not None:
                self._bytes -= entry.array.nbytes
        if self._disk is not None:
            self._disk.drop(digest)

    def _release_all(self, digest: str) -> None:
        """The budget lets the image go: so do all its holds."""
        for tag in self._holdings.holders(digest):
            user = self._holdings.user(tag, digest) or f"#{tag}"
            if self._holdings.release(tag, digest):
                self.audit.record("evicted", user, digest)

    # -- disk --------------------------------------------------------------------------------------
    def _load(self, digest: str) -> CachedImage | None:
        if self._disk is None:
            return None
        try:
            loaded = self._disk.load(digest)
            if loaded is None:
                return None
            array, spacing = loaded
            if image_digest(array, spacing) != digest:
                raise ValueError("content does not match its digest")
        except Exception as exc:  # noqa: BLE001 - any damage (a lying header: MemoryError) drops the entry
            log.warning("dropping unreadable disk-cache entry %s: %s: %s", digest[:12], type(exc).__name__, exc)
            self._disk.drop(digest)
            return None
        return self._insert(CachedImage(digest, array, spacing, self._holdings.holders(digest)), None)

    def _trim_disk(self, keep: str) -> None:
        """Keep the images on disk within the budget, fairly (see :func:`fair_victim`)."""
        assert self._disk is not None, "only with a disk cache"
        sizes = self._disk.sizes()
        total = sum(size for size, _ in sizes.values())
        if total <= self._disk.budget:
            return
        holders: dict[str, set[str]] = defaultdict(set)
        last_use: dict[str, float] = defaultdict(float)
        for tag, digest, used in self._disk.markers():
            holders[digest].add(tag)
            last_use[digest] = max(last_use[digest], used)
        items = sorted(((last_use[d], d, size) for d, (size, _) in sizes.items()))
        queue = [(d, holders[d], size) for _, d, size in items]
        while total > self._disk.budget:
            victim = fair_victim(queue, keep)
            if victim is None:
                return
            self._release_all(victim)
            with self._lock:
                entry = self._entries.pop(victim, None)
                if entry is not None:
                    self._bytes -= entry.array.nbytes
            self._disk.drop(victim)
            total -= sizes[victim][0]
            queue = [item for item in queue if item[0] != victim]


async def expire_forever(cache: ImageCache, in_use: Callable[[], Iterable[tuple[str, str]]]) -> None:
    """Apply the retention every quarter of it (at most every minute), beside the server's work."""
    interval = min(max(cache.retention_s / 4, 0.05), 60.0)
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(cache.expire, list(in_use()))  # its idle threads end; to_thread's stay
        except Exception:  # noqa: BLE001 - a disk fault must not end the retention for good
            log.exception("applying the image retention failed; trying again in %.0f s", interval)
