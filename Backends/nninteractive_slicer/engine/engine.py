"""One nnInteractive-style inference session with changed-region results: what the local backend, every
server session and the official backend run.

The inner session is nnInteractive's own (:func:`model_session`, on a shared, loaded model; every call
on the device thread, :mod:`.device_worker`) or the official client's, which mirrors it method by method.
Inputs arrive already validated by :mod:`..interface`. What this adds to the inner session:

* changed-region results. nnInteractive reports the whole box it wrote (up to a patch, or four times
  one after zooming out); the result is the tight box of the voxels that actually differ from what the
  caller was last given, so less travels and less is written into the segment;
* reproducibility: nnInteractive's refinement planning draws random numbers, so each prompt draws from a
  stream seeded from the prompt's index in the current object (:mod:`.prompt_rng`, also with prompts of
  two sessions running at once). The same prompt sequence gives the same mask in any process, and a replay
  after a lost session lands on the same state;
* nothing changed on failure: calls that rewrite the whole mask (reset, a starting mask) write a new
  buffer that replaces the mask only when they succeed; nnInteractive rolls a failed prompt back itself;
* with nnInteractive's own session (:class:`ModelEngine`), a device-time budget per prompt
  (:func:`device_budget`), typed errors: its input errors become
  InvalidPromptError, CUDA out-of-memory frees the cache and becomes OutOfMemoryError; and multi-step
  undo and redo (:mod:`.undo_history`): every step (prompt, starting mask, reset) leaves a compressed
  snapshot of nnInteractive's state, the mask and the prompt count, and undo/redo restore one exactly,
  never by replaying prompts. Over the official client, undo is the server's single level.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import BackendError, InvalidPromptError, OutOfMemoryError, UndoError
from ..interface import BBox, Box, Point, Prompt, PromptResult, UndoState, box_slices, changed_box
from .model_loading import LoadedModel, new_inference_session
from .prompt_rng import seeded_prompt_rng
from .snapshots import SnapshotScheduler
from .undo_history import (
    DEFAULT_BUDGET_BYTES,
    DEFAULT_MAX_STEPS,
    UndoHistory,
    UndoStep,
    restore_snapshot,
    take_snapshot,
)

log = logging.getLogger("nninteractive_slicer.engine")

OOM_MESSAGE = (
    "The GPU ran out of memory for this prompt; nothing was changed. Close other programs using the GPU, "
    "or work on a smaller image (crop it), then try again."
)


class PromptBudgetError(InvalidPromptError):
    """A prompt used up its device time and was stopped; nnInteractive rolled it back, so nothing changed."""


@contextmanager
def device_budget(network: Any, seconds: float | None) -> Iterator[None]:
    """Stop a prompt that runs past ``seconds``: checked before each forward pass of ``network``, so a prompt holds
    the device at most its budget plus one pass. nnInteractive plans one pass per refinement patch, and their
    number grows with the region where the new prediction and the previous segmentation disagree: a starting mask
    of all ones followed by one point refines the whole image (190 patches, minutes, at 64^3 with a 64^3 patch).
    Sessions share ``network``, so the check counts only passes of this thread's prompt."""
    if seconds is None:
        yield
        return
    deadline, owner = time.monotonic() + seconds, threading.get_ident()

    def check(_module: Any, _inputs: Any) -> None:
        if threading.get_ident() == owner and time.monotonic() > deadline:
            raise PromptBudgetError(
                f"This prompt needed more than {seconds:g} s of device time, the most this server gives one prompt, "
                "and was stopped; nothing was changed. It asked the model to refine a very large region (a starting "
                "mask or segment far larger than the object?): reset, or start from a smaller mask.")

    handle = network.register_forward_pre_hook(check)
    try:
        yield
    finally:
        handle.remove()


class Engine:
    """Image, current object's mask and prompt count of one user, over an inner nnInteractive-style session."""

    # Whether results carry the call's time as the model's: not when the model runs behind a server.
    reports_model_time = False

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._mask: np.ndarray | None = None  # the confirmed mask, also the inner session's target buffer
        self._reported: np.ndarray | None = None  # the mask as the caller has it, from our results
        self._prompt_count = 0
        self._last_box: Box | None = None  # what the last prompt wrote; undo reverts exactly that
        self._can_undo = False  # nnInteractive keeps one level of undo
        self._unreported: Box | None = None  # changed outside any call's box (see :meth:`adopt`)

    @property
    def inner(self) -> Any:
        return self._inner

    @property
    def prompt_count(self) -> int:
        """Prompts applied to the current object (undone ones excluded): the next prompt's RNG seed."""
        return self._prompt_count

    @property
    def mask(self) -> np.ndarray | None:
        return self._mask

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        return None if self._mask is None else (self._mask.shape[0], self._mask.shape[1], self._mask.shape[2])

    def mask_copy(self) -> np.ndarray:
        """A copy of the whole mask (an image must have been set)."""
        mask, _ = self._buffers()
        return mask.copy()

    @property
    def can_undo(self) -> bool:
        return self._can_undo

    @property
    def undo_state(self) -> UndoState:
        return UndoState(undo=int(self._can_undo))

    def set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        self.start_image(image, spacing)
        self.finish_image(image.shape)

    def start_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> Future[Any] | None:
        """First half of :meth:`set_image`: hand the image over. Returns the preprocessing still running in the
        background, which a server awaits off the device thread (other sessions' prompts go on meanwhile)."""
        self._run(lambda: self._inner.set_image(image[None], {"spacing": list(spacing)}))
        return None

    def finish_image(self, shape: tuple[int, ...]) -> None:
        """Second half of :meth:`set_image`: wait for preprocessing (its failure is raised here), then an empty
        mask of ``shape``."""
        self._image_sent()
        mask = np.zeros(shape, dtype=np.uint8)
        self._run(lambda: self._inner.set_target_buffer(mask))
        self._mask, self._reported = mask, np.zeros(shape, dtype=np.uint8)
        self._start_object()
        self._image_set()

    def drop_image(self) -> None:
        """Forget the image and mask after setting a new image failed half way: no call runs on a half-set image
        (the interface asks for an image first) until the next image is set."""
        self._mask = self._reported = None
        self._start_object()

    def set_initial_mask(self, mask: np.ndarray) -> None:
        self._on_new_buffer(lambda: self._inner.add_initial_seg_interaction(mask, run_prediction=False))

    def reset(self) -> None:
        self._on_new_buffer(self._inner.reset_interactions)

    def prompt(self, prompt: Prompt) -> PromptResult:
        started = time.perf_counter()
        with seeded_prompt_rng(self._prompt_count):
            written = _as_box(self._run(lambda: _add_interaction(self._inner, prompt)))
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._prompt_count += 1
        self._last_box, self._can_undo = written, True
        self._stepped(written)
        return self._result(written, elapsed_ms)

    def undo(self, steps: int = 1) -> PromptResult:
        """Revert the last prompt. Undo restores exactly what that prompt wrote, so its box covers every voxel
        that changes back (the official client reports only whether something was undone)."""
        if not self._can_undo or steps != 1:
            raise UndoError("There is nothing to undo: the server keeps only the last prompt, until a new "
                            "object starts." if not self._can_undo else "The server keeps one level of undo.")
        started = time.perf_counter()
        undone = self._run(self._inner.undo)
        elapsed_ms = (time.perf_counter() - started) * 1000
        box, self._last_box, self._can_undo = self._last_box, None, False
        if not undone:  # the inner session keeps no undo (an official server started with --no-undo)
            return self._result(None, elapsed_ms)
        self._prompt_count -= 1
        return self._result(box, elapsed_ms)

    def adopt(self, rebuilt: Engine) -> Box | None:
        """Go on with ``rebuilt``, a new inner session replayed from a journal after the old one was lost: its
        mask becomes ours. Returns where it differs from what the caller has (a server that does not seed its
        refinement may not replay bit for bit); the next result includes that region."""
        differs = None
        if self._reported is not None and rebuilt._mask is not None:
            differs = changed_box(self._reported, rebuilt._mask)
            self._unreported = _union(self._unreported, differs)
        self._inner, self._mask, self._prompt_count = rebuilt._inner, rebuilt._mask, rebuilt._prompt_count
        if rebuilt._last_box is not None:  # the new session can undo the last replayed prompt
            self._last_box = rebuilt._last_box
        return differs

    def rebind(self, inner: Any) -> None:
        """Go on with another inner session that holds no mask of ours yet (the next call sets one)."""
        self._inner = inner

    def close(self) -> None:
        self._inner = None
        self._mask = None

    # -- what differs between inner sessions -----------------------------------------------------------
    def redo(self, steps: int = 1) -> PromptResult:
        raise UndoError("This backend cannot redo.")

    def _image_sent(self) -> None:
        """Runs after the image was sent, before the target buffer is."""

    def _image_set(self) -> None:
        """Runs once a new image and its empty mask are in place."""

    def _stepped(self, written: Box | None) -> None:
        """Runs after each step (prompt, starting mask, reset) succeeded, before its result is computed;
        ``written`` is where it may have changed the mask."""

    def _run(self, call: Callable[[], Any]) -> Any:
        """One call into the inner session."""
        return call()

    # -- bookkeeping -------------------------------------------------------------------------------------
    def _on_new_buffer(self, call: Callable[[], Any]) -> None:
        """Run a call that rewrites the whole mask (reset, starting mask) on a new buffer, ours once it succeeded.

        The official client writes its buffer before it sends the request, so a failed call would otherwise
        change the confirmed mask."""
        mask, reported = self._buffers()
        fresh = np.zeros_like(mask)
        self._inner.target_buffer = fresh
        self._run(call)
        self._mask = fresh
        reported[...] = fresh
        self._start_object()
        self._stepped(tuple((0, n) for n in fresh.shape))  # type: ignore[arg-type]

    def _start_object(self) -> None:
        self._prompt_count = 0
        self._last_box, self._can_undo, self._unreported = None, False, None

    def _result(self, written: Box | None, elapsed_ms: float | None) -> PromptResult:
        """The voxels inside the written box that differ from what the caller has, as a tight box."""
        backend_ms = elapsed_ms if self.reports_model_time else None
        written, self._unreported = _union(self._unreported, written), None
        if written is None:
            return PromptResult(backend_ms=backend_ms)
        mask, reported = self._buffers()
        region = box_slices(written)
        box = changed_box(reported[region], mask[region], offset=written)
        if box is None:
            return PromptResult(backend_ms=backend_ms)
        patch = mask[box_slices(box)].copy()
        reported[box_slices(box)] = patch
        return PromptResult(box, patch, backend_ms)

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """The mask and what the caller has of it; they exist once an image was set (the interface checks)."""
        assert self._mask is not None and self._reported is not None, "no image was set"
        return self._mask, self._reported


class ModelEngine(Engine):
    """Over nnInteractive's own session, on the device thread: model time, typed errors, a clean close."""

    reports_model_time = True

    def __init__(self, model: LoadedModel, undo_budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 undo_steps: int = DEFAULT_MAX_STEPS, prompt_budget_s: float | None = None,
                 snapshots: SnapshotScheduler | None = None) -> None:
        inner = new_inference_session(model.device, model.torch_threads)
        inner.initialize_from_loaded_artifacts(model.artifacts)
        super().__init__(inner)
        self.model = model
        self.prompt_budget_s = prompt_budget_s  # device time one prompt may use (None: unbounded)
        self._history = UndoHistory(undo_budget_bytes, undo_steps)
        self._unsaved: tuple[Box | None] | None = None  # the last step, when it awaits its snapshot
        self._settling = threading.Lock()  # a snapshot in progress on another thread
        self._snapshots = snapshots  # takes each step's snapshot in the background (None: the next call does)

    @property
    def history(self) -> UndoHistory:
        return self._history

    @property
    def can_undo(self) -> bool:
        return self.undo_state.undo > 0

    @property
    def undo_state(self) -> UndoState:
        """Exact once :meth:`settle` ran; before, the step awaiting its snapshot counts as kept (one more undo,
        no redo), which the budget may yet evict: an undo that reaches past it is a clear UndoError."""
        if self._unsaved is None:
            return UndoState(self._history.undo_available, self._history.redo_available)
        return UndoState(min(self._history.undo_available + 1, self._history.max_steps), 0)

    def settle(self) -> None:
        """Snapshot the last step for undo, on any thread. Snapshots of a large image take tens of milliseconds,
        so a step's result goes out first and :mod:`.snapshots` calls this a moment later; every later call of
        this engine settles first, so a snapshot always shows the step it belongs to. A snapshot that fails
        (out of RAM) costs the undo history, never the result the user already has."""
        with self._settling:
            if self._unsaved is None:
                return
            (written,) = self._unsaved
            try:
                self._history.add(self._step(written))
            except Exception as exc:
                log.warning("Could not keep an undo step (%s); the undo history starts again here.", exc)
                self._history.clear()
            finally:
                self._unsaved = None  # only now: until then undo_state counts the step as pending

    def start_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> Future[Any] | None:
        with self._settling:
            self._unsaved = None
            self._history.clear()
        super().start_image(image, spacing)
        future: Future[Any] | None = self._inner.preprocess_future
        return future

    def prompt(self, prompt: Prompt) -> PromptResult:
        self.settle()
        with device_budget(self._inner.network, self.prompt_budget_s):
            return super().prompt(prompt)

    def set_initial_mask(self, mask: np.ndarray) -> None:
        self.settle()
        super().set_initial_mask(mask)

    def reset(self) -> None:
        self.settle()
        super().reset()

    def undo(self, steps: int = 1) -> PromptResult:
        """Go back ``steps`` steps; UndoError (nothing changed) when the history holds fewer."""
        return self._move(-steps)

    def redo(self, steps: int = 1) -> PromptResult:
        """Go forward ``steps`` undone steps; UndoError (nothing changed) when fewer can be redone."""
        return self._move(steps)

    def _image_set(self) -> None:
        self._history.start(self._step(None))

    def drop_image(self) -> None:
        with self._settling:
            self._unsaved = None
            self._history.clear()
        super().drop_image()

    def _stepped(self, written: Box | None) -> None:
        self._unsaved = (written,)
        if self._snapshots is not None:
            self._snapshots.schedule(self)

    def _step(self, written: Box | None) -> UndoStep:
        return UndoStep(take_snapshot(self._inner), self._prompt_count, written)

    def _restore(self, step: UndoStep | None) -> None:
        if step is not None:
            self._inner.target_buffer = self._mask  # restored in place: the mask stays the caller's array
            restore_snapshot(self._inner, step.state)
            self._prompt_count = step.prompt_count

    def _move(self, delta: int) -> PromptResult:
        self.settle()
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

    def _image_sent(self) -> None:
        # nnInteractive preprocesses in its own executor; waiting here reports a failure with this call and
        # leaves nothing running in the background that a close (or the interpreter's exit) could strand.
        self._run(self._inner.preprocess_future.result)

    def _run(self, call: Callable[[], Any]) -> Any:
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

    def close(self) -> None:
        self._inner.executor.shutdown(wait=True)
        with self._settling:
            self._unsaved = None
            self._history.clear()
        super().close()


def _add_interaction(inner: Any, prompt: Prompt) -> Any:
    """One prompt through the inner session; returns the box it wrote, as the session reports it."""
    positive = prompt.positive
    if isinstance(prompt, Point):
        return inner.add_point_interaction(list(prompt.coord), include_interaction=positive)
    if isinstance(prompt, BBox):
        return inner.add_bbox_interaction([list(r) for r in prompt.box], include_interaction=positive)
    add = inner.add_scribble_interaction if prompt.kind == "scribble" else inner.add_lasso_interaction
    return add(prompt.mask, include_interaction=positive, interaction_bbox=[list(r) for r in prompt.box])


def _as_box(changed: Any) -> Box | None:
    if changed is None:
        return None
    box = tuple((int(lo), int(hi)) for lo, hi in changed)
    return None if any(hi <= lo for lo, hi in box) else box  # type: ignore[return-value]


def _union(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return a or b
    return tuple((min(x[0], y[0]), max(x[1], y[1])) for x, y in zip(a, b))  # type: ignore[return-value]
