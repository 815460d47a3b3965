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
  the cache and becomes OutOfMemoryError. nnInteractive rolls a failed interaction back itself.
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

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self._session = new_inference_session(model.device, model.torch_threads)
        self._session.initialize_from_loaded_artifacts(model.artifacts)
        self._mask: np.ndarray | None = None
        self._reported: np.ndarray | None = None  # the mask as the caller has it, from our results
        self._prompt_count = 0
        self._last_box: Box | None = None  # what the last prompt wrote; undo reverts exactly that
        self._can_undo = False  # nnInteractive keeps one level of undo

    @property
    def prompt_count(self) -> int:
        """Prompts applied to the current object (undone ones excluded): the next prompt's RNG seed."""
        return self._prompt_count

    @property
    def mask(self) -> np.ndarray | None:
        return self._mask

    def set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        # nnInteractive preprocesses in its own executor; waiting here reports a failure with this call and
        # leaves nothing running in the background that a close (or the interpreter's exit) could strand.
        self._session.set_image(image[None], {"spacing": list(spacing)})
        self._guarded(self._session.preprocess_future.result)
        self._mask = np.zeros(image.shape, dtype=np.uint8)
        self._reported = np.zeros(image.shape, dtype=np.uint8)
        self._session.set_target_buffer(self._mask)
        self._start_object()

    def set_initial_mask(self, mask: np.ndarray) -> None:
        self._guarded(lambda: self._session.add_initial_seg_interaction(mask, run_prediction=False))
        self._reported[...] = self._mask
        self._start_object()

    def reset(self) -> None:
        self._session.reset_interactions()
        self._reported.fill(0)
        self._start_object()

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
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._prompt_count += 1
        self._last_box = _as_box(changed)
        self._can_undo = True
        return self._result(self._last_box, elapsed_ms)

    def undo(self) -> PromptResult:
        if not self._can_undo:
            return PromptResult()
        started = time.perf_counter()
        if not self._session.undo():
            return PromptResult()
        elapsed_ms = (time.perf_counter() - started) * 1000
        box, self._last_box, self._can_undo = self._last_box, None, False
        self._prompt_count -= 1
        return self._result(box, elapsed_ms)

    @property
    def can_undo(self) -> bool:
        return self._can_undo

    def close(self) -> None:
        self._session.executor.shutdown(wait=True)
        self._session = None
        self._mask = None

    def _start_object(self) -> None:
        self._prompt_count = 0
        self._last_box = None
        self._can_undo = False

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
