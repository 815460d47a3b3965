"""What a session costs in memory, and how much the server lets all sessions hold together.

Request bodies of image chunks are held in memory while they arrive and are decoded: :class:`BodyGate` bounds
how many bytes of them one user may have in flight (40 parallel 16 MiB chunks of one user raised the peak by
about 400 MB).

A session holds about 18-20 bytes per voxel of its image (measured for issue 13: nnInteractive's float32
image and interaction channels, its target buffer, our mask and its undo copy), so a 1024^3 image asks
for about 20 GB. Images themselves are counted by the image cache's own budget.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..errors import ServerBusyError

SESSION_BYTES_PER_VOXEL = 20
HOST_FRACTION = 0.5  # of the machine's memory; the rest is the model, the image cache, the OS
DEVICE_FRACTION = 0.8  # of the GPU's memory; the rest is the model and its activations


def session_bytes(shape: tuple[int, ...]) -> int:
    return math.prod(shape) * SESSION_BYTES_PER_VOXEL


def default_budget(device: Any) -> int:
    """A safe share of what the machine has: half its memory and, on a GPU, 80% of the GPU's."""
    budget = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * HOST_FRACTION)
    if getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        _, total = torch.cuda.mem_get_info(device)
        budget = min(budget, int(total * DEVICE_FRACTION))
    return budget


def release_freed_memory() -> None:
    """Hand memory that is free but still held by the C allocator back to the system (glibc on Linux; elsewhere
    nothing). glibc keeps freed blocks in per-thread arenas, and holes below the top of an arena stay resident:
    over a day of sessions ending and starting on many threads (uploads in the thread pool, prompts on two
    device threads) the server's resident memory crept up although nothing was leaked (the soak)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


class BodyGate:
    """How many bytes of request bodies (image chunks) one user may have in the server's memory at once.

    A body past the user's share waits, unread, before the route reads it: the server stops reading that
    connection, so its bytes stay with the sender (TCP flow control), not in the server. A body that waits
    longer than ``wait_s`` is refused as busy. One body always fits, whatever its size (the body limit
    bounds it)."""

    def __init__(self, per_user_bytes: int, wait_s: float = 20.0) -> None:  # under the request timeout
        self.per_user_bytes, self.wait_s = per_user_bytes, wait_s
        self._held: dict[str, int] = {}
        self._changed = asyncio.Condition()

    def held(self, user: str) -> int:
        return self._held.get(user, 0)

    @asynccontextmanager
    async def hold(self, user: str, nbytes: int) -> AsyncIterator[None]:
        """Count ``nbytes`` of ``user``'s for the length of the block, once they fit the user's share."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(
                    lambda: not self.held(user) or self.held(user) + nbytes <= self.per_user_bytes), self.wait_s)
            except TimeoutError:
                raise ServerBusyError(f"Your uploads in flight hold {self.held(user)} bytes of this server's memory, "
                                      f"the most one user may ({self.per_user_bytes}): send fewer chunks at once.",
                                      5.0) from None
            self._held[user] = self.held(user) + nbytes
        try:
            yield
        finally:
            async with self._changed:
                self._held[user] -= nbytes
                if not self._held[user]:
                    del self._held[user]
                self._changed.notify_all()
