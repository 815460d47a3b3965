"""Runs a history again on a backend, step by step, and says where the result departs from the recording.

Replays are bit-identical where the backend is deterministic (the same model on the same kind of
device: every prompt is seeded by its index, see :mod:`..engine.engine`). Elsewhere the report counts,
per step, the voxels in which the replayed mask differs from the recorded one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..interface import Backend, PromptResult
from .codec import voxel_digest
from .model import History, Step

StepCallback = Callable[[int, int, "StepReport"], None]


class HistoryMismatchError(ValueError):
    """The history does not belong to this image (or model): replaying it would mean nothing."""


@dataclass(frozen=True)
class StepReport:
    index: int
    op: str
    kind: str | None
    differing_voxels: int


@dataclass(frozen=True, eq=False)
class ReplayReport:
    steps: list[StepReport]
    mask: np.ndarray

    @property
    def identical(self) -> bool:
        return all(step.differing_voxels == 0 for step in self.steps)


def check_image(history: History, image: np.ndarray) -> None:
    """Raise HistoryMismatchError unless ``image`` holds exactly the history's voxels."""
    expected = history.image
    if tuple(image.shape) != expected.shape or image.dtype.name != expected.dtype:
        raise HistoryMismatchError(
            f"The image is {image.dtype.name} of size {image.shape[::-1]}, the history was made on {expected.dtype} "
            f"of size {expected.shape[::-1]}: open the image the history was made on."
        )
    if voxel_digest(image) != expected.digest:
        raise HistoryMismatchError("The image's voxels differ from those the history was made on: open that image.")


def replay(history: History, backend: Backend, image: np.ndarray | None,
           on_step: StepCallback | None = None) -> ReplayReport:
    """Set ``image`` (None: the backend already has it, e.g. checked by the caller), then run every step.

    The image is checked against the history before any model time is spent.
    """
    if image is not None:
        check_image(history, image)
        backend.set_image(image, history.image.spacing)
    if history.initial_mask is not None:
        backend.set_initial_mask(history.initial_mask)
    elif image is None:
        backend.reset()
    replayed = history.start_mask()
    recorded = history.start_mask()
    reports: list[StepReport] = []
    for index, step in enumerate(history.steps):
        _run(step, backend, replayed)
        _apply_recorded(step, recorded)
        report = StepReport(index, step.op, getattr(step.prompt, "kind", None),
                            int(np.count_nonzero(replayed != recorded)))
        reports.append(report)
        if on_step is not None:
            on_step(index + 1, len(history.steps), report)
    return ReplayReport(reports, replayed)


def _run(step: Step, backend: Backend, mask: np.ndarray) -> None:
    if step.op == "prompt":
        backend.prompt(step.prompt).apply_to(mask)  # type: ignore[arg-type]
    elif step.op == "undo":
        backend.undo().apply_to(mask)
    elif step.op == "redo":
        redo: Callable[[], PromptResult] | None = getattr(backend, "redo", None)
        if redo is None:
            raise HistoryMismatchError(f"The {backend.kind} backend cannot redo, and the history has a redo step.")
        redo().apply_to(mask)
    elif step.op == "reset":
        backend.reset()
        mask.fill(0)
    else:  # set_mask
        backend.set_initial_mask(step.mask)
        mask[...] = step.mask


def _apply_recorded(step: Step, mask: np.ndarray) -> None:
    if step.op == "reset":
        mask.fill(0)
    elif step.op == "set_mask":
        mask[...] = step.mask
    elif step.result.box is not None:
        PromptResult(step.result.box, step.result.patch).apply_to(mask)
