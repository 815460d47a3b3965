"""One nnInteractive session on a shared, loaded model: what the local backend and every server session run.

Every method must be called on the device thread (:mod:`.device_worker`). Inputs arrive already
validated by :mod:`.interface`. What this adds to nnInteractive's own session:

* changed-region results with the model time of each call. nnInteractive reports the whole box it
  wrote (up to a patch, or four times one after zooming out); the result is the tight box of the
  voxels that actually differ from what the caller was last given, so less travels and less is
  written into the segment;
* reproducibility: nnInteractive's refinement planning can fall back to numpy's global RNG, so
  each prompt runs with that RNG seeded from the prompt's index in the current object (and the
  caller's RNG state restored afterwards). The same prompt sequence gives the same mask in any
  process, and a replay after a lost session lands on the same state;
* typed errors: nnInteractive's input errors become InvalidPromptError, CUDA out-of-memory frees
  the cache and becomes OutOfMemoryError. nnInteractive rolls a failed interaction back itself;
* multi-step undo and redo (:mod:`.undo_history`): every step (prompt, starting mask, reset) leaves a
  compressed snapshot of nnInteractive's state, the mask and the prompt count, and undo/redo restore one
  exactly, never by replaying prompts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import BackendError, InvalidPromptError, OutOfMemoryError
from ..interface import Box, Prompt, PromptResult, box_slices, changed_box
from .model_loading import LoadedModel, new_inference_session
from .undo_history import (
    DEFAULT_BUDGET_BYTES,
    DEFAULT_MAX_STEPS,
    UndoHistory,
    UndoStep,
    restore_snapshot,
    take_snapshot,
)

OOM_MESSAGE = (
    "The GPU ran out of memory for this prompt; nothing was changed. Close other programs using the GPU, "
    "or work on a smaller image (crop it), then try again."
)


@contextmanager
def seeded_numpy_rng(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for one call and put the caller's state back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class InteractiveSession:
    """Image, current object's mask and prompt count of one user, on a model shared with others."""

    def __init__(self, model: LoadedModel, undo_budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 undo_steps: int = DEFAULT_MAX_STEPS) -> None:
        self.model = model
        self._session = new_inference_session(model.device, model.torch_threads)
        self._session.initialize_from_loaded_artifacts(model.artifacts)
        self._mask: np.ndarray | None = None
        self._reported: np.ndarray | None = None  # the mask as the caller has it, from our results
        self._prompt_count = 0
        self._history = UndoHistory(undo_budget_bytes, undo_steps)

    @property
    def prompt_count(self) -> int:
        """Prompts applied to the current object (undone ones excluded): the next prompt's RNG seed."""
        return self._prompt_count

    @property
    def mask(self) -> np.ndarray | None:
        return self._mask

    @property
    def history(self) -> UndoHistory:
        return self._history

    def set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        # nnInteractive preprocesses in its own executor; waiting here reports a failure with this call and
        # leaves nothing running in the background that a close (or the interpreter's exit) could strand.
        self._history.clear()
        self._session.set_image(image[None], {"spacing": list(spacing)})
        self._guarded(self._session.preprocess_future.result)
        self._mask = np.zeros(image.shape, dtype=np.uint8)
        self._reported = np.zeros(image.shape, dtype=np.uint8)
        self._session.set_target_buffer(self._mask)
        self._prompt_count = 0
        self._history.start(self._step(None))

    def set_initial_mask(self, mask: np.ndarray) -> None:
        self._guarded(lambda: self._session.add_initial_seg_interaction(mask, run_prediction=False))
        self._prompt_count = 0
        self._record(self._whole())
        self._reported[...] = self._mask

    def reset(self) -> None:
        self._session.reset_interactions()
        self._prompt_count = 0
        self._record(self._whole())
        self._reported.fill(0)

    def prompt(self, prompt: Prompt) -> PromptResult:
        session = self._session
        kind, positive = prompt.kind, prompt.positive
        calls: dict[str, Callable[[], Any]] = {
            "point": lambda: session.add_point_interaction(prompt.coord, include_interaction=positive),
            "bbox": lambda: session.add_bbox_interaction([list(r) for r in prompt.box], include_interaction=positive),
            "scribble": lambda: session.add_scribble_interaction(
                prompt.mask, include_interaction=positive, interaction_bbox=[list(r) for r in prompt.box]
            ),
            "lasso": lambda: session.add_lasso_interaction(
                prompt.mask, include_interaction=positive, interaction_bbox=[list(r) for r in prompt.box]
            ),
        }
        started = time.perf_counter()
        with seeded_numpy_rng(self._prompt_count):
            changed = self._guarded(calls[kind])
        self._prompt_count += 1
        written = _as_box(changed)
        self._record(written)
        return self._result(written, (time.perf_counter() - started) * 1000)

    def undo(self, steps: int = 1) -> PromptResult:
        """Go back ``steps`` steps; UndoError (nothing changed) when the history holds fewer."""
        return self._move(-steps)

    def redo(self, steps: int = 1) -> PromptResult:
        """Go forward ``steps`` undone steps; UndoError (nothing changed) when fewer can be redone."""
        return self._move(steps)

    @property
    def can_undo(self) -> bool:
        return self._history.undo_available > 0

    def close(self) -> None:
        self._session.executor.shutdown(wait=True)
        self._session = None
        self._mask = None
        self._history.clear()

    def _step(self, written: Box | None) -> UndoStep:
        return UndoStep(take_snapshot(self._session), self._prompt_count, written)

    def _whole(self) -> Box:
        return tuple((0, n) for n in self._mask.shape)  # type: ignore[return-value]

    def _record(self, written: Box | None) -> None:
        """Snapshot the step just taken; if that fails, put the session back to the step before and re-raise."""
        try:
            self._history.add(self._step(written))
        except BaseException:
            self._restore(self._history.current)
            raise

    def _restore(self, step: UndoStep | None) -> None:
        if step is not None:
            restore_snapshot(self._session, step.state)
            self._prompt_count = step.prompt_count

    def _move(self, delta: int) -> PromptResult:
        started = time.perf_counter()
        before = self._history.current
        step, region = self._history.move(delta)
        try:
            self._restore(step)
        except BaseException:
            self._history.move(-delta)
            self._restore(before)
            raise
        return self._result(region, (time.perf_counter() - started) * 1000)

    def _result(self, written: Box | None, backend_ms: float) -> PromptResult:
        """The voxels inside the written box that differ from what the caller has, as a tight box."""
        if written is None:
            return PromptResult(backend_ms=backend_ms)
        region = box_slices(written)
        box = changed_box(self._reported[region], self._mask[region], offset=written)
        if box is None:
            return PromptResult(backend_ms=backend_ms)
        patch = self._mask[box_slices(box)].copy()
        self._reported[box_slices(box)] = patch
        return PromptResult(box, patch, backend_ms)

    def _guarded(self, call: Callable[[], Any]) -> Any:
        import torch

        try:
            return call()
        except torch.OutOfMemoryError as exc:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise OutOfMemoryError(OOM_MESSAGE) from exc
        except BackendError:
            raise
        except ValueError as exc:
            raise InvalidPromptError(str(exc)) from exc
        except RuntimeError as exc:
            raise BackendError(f"nnInteractive failed on this prompt: {exc}") from exc


def _as_box(changed: Any) -> Box | None:
    if changed is None:
        return None
    box = tuple((int(lo), int(hi)) for lo, hi in changed)
    return None if any(hi <= lo for lo, hi in box) else box  # type: ignore[return-value]
