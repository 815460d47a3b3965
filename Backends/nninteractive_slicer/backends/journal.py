"""What a server-side session holds, kept by the client so a lost session can be rebuilt exactly.

A server may forget a session (reaped, restarted, evicted). Because every backend seeds each
prompt from its index in the current object (see :mod:`.engine`), replaying the image, the
starting mask and the prompts of the current object reproduces the lost state bit for bit.
Remote backends record every successful call here and replay it into a fresh session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..interface import Prompt

# How much of the journal a new server session must hold before the call that needed it: nothing (a new
# image follows), the image only (a new object follows), or all of it (a prompt, undo or mask read follows).
Restore = Literal["nothing", "image", "all"]


@dataclass
class Replay:
    """The calls that rebuild a session, in order: image, starting mask (or None), prompts."""

    image: Any
    spacing: tuple[float, float, float]
    initial_mask: np.ndarray | None
    prompts: list[Prompt]


@dataclass
class SessionJournal:
    """Image, starting mask and prompts of the current object, as the server last confirmed them.

    ``image`` is whatever the backend needs to send the image again (the array, or its encoded
    upload): the journal never copies it.
    """

    image: Any = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    initial_mask: np.ndarray | None = None
    prompts: list[Prompt] = field(default_factory=list)

    def image_set(self, image: Any, spacing: tuple[float, float, float]) -> None:
        self.image, self.spacing = image, spacing
        self.object_started(None)

    def object_started(self, initial_mask: np.ndarray | None) -> None:
        """A new object: from a starting mask, or empty after a reset (None)."""
        self.initial_mask = initial_mask
        self.prompts = []

    def prompted(self, prompt: Prompt) -> None:
        self.prompts.append(prompt)

    def undone(self) -> None:
        if self.prompts:
            self.prompts.pop()

    def replay(self) -> Replay | None:
        """The calls to rebuild the session, or None when no image was ever set."""
        if self.image is None:
            return None
        return Replay(self.image, self.spacing, self.initial_mask, list(self.prompts))

    def restore_into(
        self,
        set_image: Callable[[Any, tuple[float, float, float]], None],
        set_initial_mask: Callable[[np.ndarray], None],
        prompt: Callable[[Prompt], Any],
        upto: Restore = "all",
    ) -> int:
        """Replay into a fresh session through the given calls, as far as ``upto``; returns how many prompts
        were replayed."""
        replay = self.replay()
        if replay is None or upto == "nothing":
            return 0
        set_image(replay.image, replay.spacing)
        if upto == "image":
            return 0
        if replay.initial_mask is not None:
            set_initial_mask(replay.initial_mask)
        for p in replay.prompts:
            prompt(p)
        return len(replay.prompts)
