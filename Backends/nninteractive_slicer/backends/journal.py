"""What a server-side session holds, kept by the client so a lost session can be rebuilt exactly.

A server may forget a session (reaped, restarted, evicted). Because every backend seeds each
prompt from its index in the current object (see :mod:`..engine.engine`), replaying the image and the
steps since (starting masks, resets, prompts) reproduces the lost state bit for bit. Remote
backends record every successful call here and replay it into a fresh session: all steps, undone
ones too, then the same undo, so the rebuilt session can undo and redo what the lost one could.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..interface import Prompt

StepKind = Literal["mask", "reset", "prompt"]
# How much of the journal a new server session must hold before the call that needed it: nothing (a new
# image follows), the image only (a new object follows), or all of it (a prompt, undo or mask read follows).
Restore = Literal["nothing", "image", "all"]


@dataclass
class SessionJournal:
    """Image and steps since it was set, as the server last confirmed them, and how many are undone.

    ``image`` is whatever the backend needs to send the image again (the array, or its encoded
    upload): the journal never copies it, nor the starting masks.
    """

    image: Any = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    steps: list[tuple[StepKind, Any]] = field(default_factory=list)
    current: int = 0  # steps in effect; those after it can be redone
    oldest: int = 0  # the oldest state the server can undo to (steps in effect there)

    def image_set(self, image: Any, spacing: tuple[float, float, float]) -> None:
        self.image, self.spacing = image, spacing
        self.steps, self.current, self.oldest = [], 0, 0

    def object_started(self, initial_mask: np.ndarray | None) -> None:
        """A new object: from a starting mask, or empty after a reset (None)."""
        self._add(("mask", initial_mask) if initial_mask is not None else ("reset", None))

    def prompted(self, prompt: Prompt) -> None:
        self._add(("prompt", prompt))

    def undone(self, steps: int = 1) -> None:
        self.current = max(self.current - steps, self.oldest)

    def redone(self, steps: int = 1) -> None:
        self.current = min(self.current + steps, len(self.steps))

    @property
    def undo_available(self) -> int:
        return self.current - self.oldest

    def confirmed(self, undo_available: int) -> None:
        """The server says how far back it can undo now (it drops old steps); steps before the object the
        oldest of them belongs to are dropped here too, so a rebuild replays no more than it must."""
        self.oldest = max(self.oldest, self.current - undo_available)
        starts = [i for i, (kind, _) in enumerate(self.steps[: self.oldest]) if kind != "prompt"]
        if starts and starts[-1] > 0:
            drop = starts[-1]  # the state after that object's start needs nothing before it
            del self.steps[:drop]
            self.current -= drop
            self.oldest -= drop

    def restore_into(
        self,
        set_image: Callable[[Any, tuple[float, float, float]], None],
        set_initial_mask: Callable[[np.ndarray], None],
        reset: Callable[[], Any],
        prompt: Callable[[Prompt], Any],
        undo: Callable[[int], Any],
        upto: Restore = "all",
    ) -> int:
        """Replay every step into a fresh session, then undo what was undone, as far as ``upto``; returns how
        many prompts ran."""
        if self.image is None or upto == "nothing":
            return 0
        set_image(self.image, self.spacing)
        if upto == "image":
            return 0
        calls: dict[str, Callable[[Any], Any]] = {"mask": set_initial_mask, "reset": lambda _: reset(),
                                                  "prompt": prompt}
        for kind, arg in self.steps:
            calls[kind](arg)
        if self.current < len(self.steps):
            undo(len(self.steps) - self.current)
        return sum(kind == "prompt" for kind, _ in self.steps)

    def _add(self, step: tuple[StepKind, Any]) -> None:
        del self.steps[self.current:]  # a new step drops what could have been redone
        self.steps.append(step)
        self.current += 1
