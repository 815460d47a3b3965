"""Multi-step undo and redo: snapshots of an nnInteractive session's state, compressed in RAM, oldest evicted first.

Why snapshots: undoing by replaying the remaining prompts would not be exact on CUDA (cuDNN picks
nondeterministic kernels), and nnInteractive itself keeps one level of undo. A snapshot is taken after
every step (a prompt, a starting mask, a reset); undo and redo restore one, so the mask *and* everything
the next prompt reads are exactly what they were, and the next prompt gives bit for bit the result it
gave the first time.

What a snapshot holds is the narrowest set of attributes of nnInteractive 2.6's
``nnInteractiveInferenceSession`` that a prompt changes and the next prompt reads
(:data:`SNAPSHOT_ATTRIBUTES`). Every other attribute is listed in :data:`UNCHANGED_BY_STEPS` with the
reason it needs no snapshot; Testing/test_undo_history.py fails when a new nnInteractive version adds,
removes or starts changing an attribute, so such a version cannot silently make undo inexact.

Everything lives in host RAM, compressed with blosc2 (nnInteractive's own dependency; its interactions
are mostly zeros): nnInteractive keeps interactions and our target buffer on the CPU anyway, so no
snapshot ever holds GPU memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendError, UndoError
from ..interface import Box, undo_limit_message

# Read and written on every snapshot/restore. The first five are public attributes.
SNAPSHOT_ATTRIBUTES = {
    "interactions": "the prompt channels and the previous prediction (prev_seg channel) the network sees",
    "target_buffer": "the mask; our array, restored in place",
    "current_interaction_intensity": "interaction decay: the scale the next prompt is written at",
    "new_interaction_centers": "predictions queued but not run (empty between calls; kept for exactness)",
    "new_interaction_zoom_out_factors": "the zoom of those queued predictions",
    "_dirty_channels": "private: channels that may be nonzero; nnInteractive's rollback of a failed prompt "
                       "and its renormalisation save only these, so it must match the restored interactions",
}

# Present on a session, but no step changes them in a way the next prompt reads.
UNCHANGED_BY_STEPS = {
    **dict.fromkeys(("network", "label_manager", "dataset_json", "trainer_name", "configuration_manager",
                     "plans_manager", "license", "point_interaction", "preferred_scribble_thickness",
                     "interaction_decay", "pad_mode_data", "channel_mapping", "num_interaction_channels",
                     "supported_interactions", "supports_initial_label", "supports_zero_shot_label_refinement"),
                    "the model, loaded once"),
    **dict.fromkeys(("device", "use_torch_compile", "verbose", "torch_n_threads", "do_autozoom",
                     "interactions_storage", "supports_undo", "_fp16_max_value", "_interaction_renorm_target"),
                    "configuration, fixed for the session"),
    **dict.fromkeys(("preprocessed_image", "original_image_shape", "_interactions_shape",
                     "_interactions_storage_resolved"),
                    "the image: set by set_image, which starts a new history"),
    "_interactions_read_buffer": "scratch space for reading blosc2 interactions, written before each read",
    **dict.fromkeys(("executor", "preprocess_future", "interactions_future"), "background preprocessing"),
    "_last_paste_bbox": "the box the last call wrote; each prediction sets it before returning it",
    "_undo_log": "nnInteractive's own single-level undo, never called here; a failed prompt rolls back "
                 "through the fresh log that prompt starts",
}

DEFAULT_BUDGET_BYTES = 512 * 1024**2
DEFAULT_MAX_STEPS = 100


# Pieces compressed one call each: blosc2's one-shot calls release the GIL, so a snapshot taken on a background
# thread does not hold up the thread that sends the reply or writes the segment (its NDArray constructor holds
# the GIL throughout, ~20 ms at 256x256x130). Also under blosc2's 2 GiB limit per call.
PIECE_BYTES = 64 * 1024**2


def _blosc2() -> Any:
    import blosc2  # installed with nnInteractive; imported lazily like torch

    blosc2.set_releasegil(True)
    return blosc2


@dataclass(frozen=True, eq=False)
class Packed:
    """A C-ordered array compressed in pieces of at most :data:`PIECE_BYTES` (LZ4 level 1, no filter: the mostly
    zero interactions compress as well as at higher levels, faster; one thread, as it runs in the background)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    pieces: tuple[bytes, ...]

    @property
    def nbytes(self) -> int:
        return sum(len(piece) for piece in self.pieces)


def _host_view(array: Any) -> np.ndarray:
    """A numpy view of a CPU numpy array or torch tensor (never a copy)."""
    if isinstance(array, np.ndarray):
        return array
    if getattr(array, "device", None) is not None and array.device.type == "cpu":
        return array.numpy()
    raise BackendError(f"Undo snapshots need the session state in host memory, got {type(array).__name__} on "
                       f"{getattr(array, 'device', '?')}.")


def _flat_pieces(flat: np.ndarray) -> list[memoryview]:
    step = max(1, PIECE_BYTES // flat.itemsize)
    return [memoryview(flat[start:start + step]).cast("B") for start in range(0, flat.size, step)]


def _pack(array: Any) -> Packed:
    blosc2 = _blosc2()
    view = np.ascontiguousarray(_host_view(array))
    pieces = tuple(blosc2.compress2(piece, codec=blosc2.Codec.LZ4, clevel=1, filters=[blosc2.Filter.NOFILTER],
                                    typesize=view.itemsize, nthreads=1) for piece in _flat_pieces(view.reshape(-1)))
    return Packed(view.shape, view.dtype, pieces)


def _unpack_into(packed: Packed, array: Any) -> None:
    """Decompress straight into ``array`` (no full-size temporary when it is contiguous)."""
    blosc2 = _blosc2()
    view = _host_view(array)
    target = view if view.flags.c_contiguous else np.empty(packed.shape, packed.dtype)
    for piece, out in zip(packed.pieces, _flat_pieces(target.reshape(-1)), strict=True):
        blosc2.decompress2(piece, dst=out)
    if target is not view:
        view[...] = target


def _cbytes(stored: Any) -> int:
    return stored.nbytes if isinstance(stored, Packed) else int(stored.schunk.cbytes)


@dataclass(frozen=True, eq=False)
class InferenceSnapshot:
    """The state of one nnInteractive session after a step, compressed."""

    interactions: Any  # Packed, or a copy of nnInteractive's own blosc2.NDArray
    target: Packed
    intensity: float
    queued: tuple[tuple[Any, ...], tuple[Any, ...]]
    dirty_channels: frozenset[int]

    @property
    def nbytes(self) -> int:
        return _cbytes(self.interactions) + _cbytes(self.target)


def take_snapshot(session: Any) -> InferenceSnapshot:
    """Compress the state of ``session`` (its interactions as a dense CPU tensor or nnInteractive's blosc2 array)."""
    try:
        interactions = session.interactions
        if hasattr(interactions, "schunk"):  # nnInteractive's blosc2 storage: a compressed copy is cheap
            packed = interactions.copy()
        else:
            packed = _pack(interactions)
        return InferenceSnapshot(
            interactions=packed,
            target=_pack(session.target_buffer),
            intensity=float(session.current_interaction_intensity),
            queued=(tuple(session.new_interaction_centers), tuple(session.new_interaction_zoom_out_factors)),
            dirty_channels=frozenset(session._dirty_channels),
        )
    except AttributeError as exc:
        raise BackendError(f"This nnInteractive version keeps its session state differently from 2.6 ({exc}): "
                           "multi-step undo cannot snapshot it. Install nnInteractive 2.6.") from exc


def restore_snapshot(session: Any, snapshot: InferenceSnapshot) -> None:
    """Put ``session`` back into the state of ``snapshot``, writing into its existing buffers."""
    if hasattr(snapshot.interactions, "schunk") and hasattr(session.interactions, "schunk"):
        session.interactions = snapshot.interactions.copy()  # the snapshot stays untouched by later prompts
    else:
        _unpack_into(snapshot.interactions, session.interactions)
    _unpack_into(snapshot.target, session.target_buffer)
    session.current_interaction_intensity = snapshot.intensity
    session.new_interaction_centers = list(snapshot.queued[0])
    session.new_interaction_zoom_out_factors = list(snapshot.queued[1])
    session._dirty_channels = set(snapshot.dirty_channels)


@dataclass(frozen=True, eq=False)
class UndoStep:
    """A snapshot after one step, what the engine adds to it, and where the step may have changed the mask."""

    state: InferenceSnapshot
    prompt_count: int
    written: Box | None  # None: the step changed no voxel of the mask

    @property
    def nbytes(self) -> int:
        return self.state.nbytes


def union_box(boxes: list[Box | None]) -> Box | None:
    """The smallest box holding all the given boxes (None ones ignored), or None."""
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return tuple((min(b[a][0] for b in present), max(b[a][1] for b in present)) for a in range(3))  # type: ignore[return-value]


class UndoHistory:
    """The steps of one image, oldest first, and which of them is current.

    Steps after the current one can be redone until a new step is added. The history keeps at most
    ``max_steps`` steps to undo and at most ``budget_bytes`` of snapshots; past either, the oldest go
    first. The current step is never evicted, so a budget too small for one more step just means no undo.
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        if budget_bytes < 0 or max_steps < 0:
            raise ValueError("The undo budget and the number of steps cannot be negative.")
        self.budget_bytes = budget_bytes
        self.max_steps = max_steps
        self._steps: list[UndoStep] = []
        self._current = -1
        self.evicted = 0  # steps dropped to stay within the limits since the last start

    @property
    def current(self) -> UndoStep | None:
        return self._steps[self._current] if self._steps else None

    @property
    def undo_available(self) -> int:
        return max(self._current, 0)

    @property
    def redo_available(self) -> int:
        return len(self._steps) - 1 - self._current

    @property
    def nbytes(self) -> int:
        return sum(step.nbytes for step in self._steps)

    def start(self, step: UndoStep) -> None:
        """A new image: ``step`` is the only state."""
        self._steps, self._current, self.evicted = [step], 0, 0

    def clear(self) -> None:
        self._steps, self._current = [], -1

    def add(self, step: UndoStep) -> None:
        """A new step after the current one; drops what could have been redone, then evicts the oldest."""
        del self._steps[self._current + 1:]
        self._steps.append(step)
        self._current = len(self._steps) - 1
        while self._current > 0 and (self._current > self.max_steps or self.nbytes > self.budget_bytes):
            self._steps.pop(0)
            self._current -= 1
            self.evicted += 1

    def move(self, delta: int) -> tuple[UndoStep, Box | None]:
        """Make the step ``delta`` away current (negative: undo); returns it and the hull of the mask regions the
        steps passed over may have changed. Raises UndoError, changing nothing, when that step is not kept."""
        if delta < 0 and -delta > self.undo_available:
            raise UndoError(undo_limit_message("undo", -delta, self.undo_available, self.evicted > 0))
        if delta > 0 and delta > self.redo_available:
            raise UndoError(undo_limit_message("redo", delta, self.redo_available))
        target = self._current + delta
        crossed = self._steps[target + 1:self._current + 1] if delta < 0 else self._steps[self._current + 1:target + 1]
        self._current = target
        return self._steps[target], union_box([s.written for s in crossed])

