"""The Logic under an asyncio host (the web app): poll without ever blocking the event loop.

Desktop Slicer's poll() waits on the work in flight because Slicer's idle main thread holds the GIL
(see logic.py). An asyncio host has no such problem: worker threads run while the loop idles, so its
Logic is made with ``poll_wait=ASYNC_POLL_WAIT`` (never wait) and the loop sleeps between polls instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .logic import Event, SlicerNNInteractiveLogic

ASYNC_POLL_WAIT = 0.0  # the Logic's poll_wait for an asyncio host: poll() returns at once
INTERVAL_S = 0.01


async def poll_until_idle(logic: SlicerNNInteractiveLogic, show: Callable[[Event], None],
                          interval: float = INTERVAL_S) -> None:
    """Poll while the Logic has work, handing each event to ``show``; other tasks run between polls."""
    while True:
        for event in logic.poll():
            show(event)
        if not logic.busy:
            return
        await asyncio.sleep(interval)
