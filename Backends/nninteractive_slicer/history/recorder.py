"""Builds a history while a segment is being made: one call per backend call that changed the object."""

from __future__ import annotations

import numpy as np

from ..interface import Prompt, PromptResult
from .codec import mask_digest
from .model import History, ImageIdentity, ModelIdentity, Step, StepOp, StepResult


class HistoryRecorder:
    """Keeps the object's mask as the backend has it (start mask plus every returned patch) to digest each step."""

    def __init__(self, image: ImageIdentity, model: ModelIdentity, backend: str,
                 initial_mask: np.ndarray | None = None, name: str = "") -> None:
        start = None if initial_mask is None or not initial_mask.any() else (initial_mask != 0).astype(np.uint8)
        self.history = History(image, model, backend, start, name=name)
        self._mask = self.history.start_mask()

    @classmethod
    def resume(cls, history: History, mask: np.ndarray) -> HistoryRecorder:
        """Continue ``history``, whose steps ended in ``mask`` (checked by the caller against its digest)."""
        recorder = cls.__new__(cls)
        recorder.history = history
        recorder._mask = (mask != 0).astype(np.uint8)
        return recorder

    @property
    def mask(self) -> np.ndarray:
        """The object's mask after the last recorded step (do not modify)."""
        return self._mask

    def prompted(self, prompt: Prompt, result: PromptResult) -> None:
        self._record("prompt", result, prompt=prompt)

    def undone(self, result: PromptResult) -> None:
        self._record("undo", result)

    def redone(self, result: PromptResult) -> None:
        self._record("redo", result)

    def reset(self) -> None:
        self._mask.fill(0)
        self._record("reset", PromptResult())

    def mask_set(self, mask: np.ndarray | None) -> None:
        """The object restarted from ``mask`` (None: empty, the same as a reset)."""
        if mask is None or not mask.any():
            self.reset()
            return
        self._mask = (mask != 0).astype(np.uint8)
        self._record("set_mask", PromptResult(), mask=self._mask.copy())

    def _record(self, op: StepOp, result: PromptResult, prompt: Prompt | None = None,
                mask: np.ndarray | None = None) -> None:
        result.apply_to(self._mask)
        patch = None if result.patch is None else (result.patch != 0).astype(np.uint8)
        self.history.steps.append(Step(op, StepResult(mask_digest(self._mask), result.box, patch), prompt, mask))
