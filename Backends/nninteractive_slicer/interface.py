"""The one backend interface that the Slicer module, the server and every script drive.

Axis order
    Backends work in the voxel space of the image array exactly as it was passed to
    :meth:`Backend.set_image`. Every coordinate, box, crop and mask below uses the same axis
    order as that array. The Slicer module passes ``slicer.util.arrayFromVolume`` arrays, which
    are indexed ``[K, J, I]``; the module's Lib owns every RAS <-> voxel conversion, so backends
    never see physical coordinates (spacing is passed along for information only).

Boxes
    A box is ``((lo0, hi0), (lo1, hi1), (lo2, hi2))``: half-open integer voxel ranges per axis.

Results
    Every prompt returns the changed region only: the tight box around the voxels that changed
    and the mask inside it (``uint8``, 0/1), or "nothing changed". Applying the returned patches
    to a copy of the mask reproduces the backend's full mask exactly.

Failure
    Backends raise the typed errors of :mod:`nninteractive_slicer.errors`. A call that raises
    leaves the backend's state unchanged.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from .config import BackendConfig, Requirement
from .errors import InvalidPromptError, NoImageError, UndoError

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
PromptKind = Literal["point", "bbox", "scribble", "lasso"]
PROMPT_KINDS: tuple[PromptKind, ...] = ("point", "bbox", "scribble", "lasso")
IMAGE_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")

T = TypeVar("T")


@dataclass(frozen=True)
class Capabilities:
    """What a backend (and the model behind it) can do; the UI enables its tools from this."""

    backend: str
    model_id: str
    license: str
    device: str
    prompt_kinds: tuple[str, ...] = PROMPT_KINDS
    supports_3d_bbox: bool = False
    supports_initial_mask: bool = True
    scribble_thickness: tuple[int, int, int] = (2, 2, 2)
    undo_depth: int = 1  # the most steps undo can go back (fewer once the backend's memory budget is reached)
    supports_redo: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Point:
    """A click at one voxel."""

    coord: tuple[int, int, int]
    positive: bool = True
    kind: PromptKind = field(default="point", init=False)


@dataclass(frozen=True)
class BBox:
    """A box; 2D when one axis has size 1 (3D boxes only where the model supports them)."""

    box: Box
    positive: bool = True
    kind: PromptKind = field(default="bbox", init=False)


@dataclass(frozen=True, eq=False)
class _CropPrompt:
    """A small 0/1 crop and the box it covers in the image: never a full-size volume."""

    mask: np.ndarray
    box: Box
    positive: bool = True


@dataclass(frozen=True, eq=False)
class Scribble(_CropPrompt):
    """Painted strokes."""

    kind: PromptKind = field(default="scribble", init=False)


@dataclass(frozen=True, eq=False)
class Lasso(_CropPrompt):
    """A filled closed contour."""

    kind: PromptKind = field(default="lasso", init=False)


Prompt = Point | BBox | Scribble | Lasso


@dataclass(frozen=True)
class UndoState:
    """How many steps can be undone and redone right now (the UI enables its buttons from this)."""

    undo: int = 0
    redo: int = 0


@dataclass(frozen=True, eq=False)
class PromptResult:
    """The changed region of one call: ``box`` and ``patch`` (uint8 0/1), or both None when nothing changed.

    ``backend_ms`` is the time spent in the model for this call, where the backend knows it.
    """

    box: Box | None = None
    patch: np.ndarray | None = None
    backend_ms: float | None = None

    @property
    def changed(self) -> bool:
        return self.box is not None

    def apply_to(self, mask: np.ndarray) -> None:
        """Write the patch into ``mask`` in place (a no-op when nothing changed)."""
        if self.box is not None:
            mask[box_slices(self.box)] = self.patch


@dataclass(frozen=True)
class UploadProgress:
    """How much of the image :meth:`Backend.set_image` is sending has reached the backend: raw image bytes."""

    sent_bytes: int
    total_bytes: int

    @property
    def fraction(self) -> float:
        return self.sent_bytes / self.total_bytes if self.total_bytes else 1.0


def box_slices(box: Box) -> tuple[slice, slice, slice]:
    return tuple(slice(lo, hi) for lo, hi in box)  # type: ignore[return-value]


def box_shape(box: Box) -> tuple[int, int, int]:
    return tuple(hi - lo for lo, hi in box)  # type: ignore[return-value]


def changed_box(before: np.ndarray, after: np.ndarray, offset: Box | None = None) -> Box | None:
    """The tight box of the voxels where two equally shaped arrays differ (shifted by ``offset``'s start), or None."""
    differs = before != after
    box = []
    for axis in range(3):
        hits = np.flatnonzero(differs.any(axis=tuple(k for k in range(3) if k != axis)))
        if hits.size == 0:
            return None
        start = offset[axis][0] if offset else 0
        box.append((start + int(hits[0]), start + int(hits[-1]) + 1))
    return tuple(box)  # type: ignore[return-value]


def normalize_box(box: Any, shape: tuple[int, ...], what: str = "box") -> Box:
    """Turn any 3x2 nesting of integral numbers into a Box inside ``shape``, or raise InvalidPromptError."""
    try:
        pairs = [(_integral(lo, what), _integral(hi, what)) for lo, hi in box]
    except (TypeError, ValueError) as exc:
        raise InvalidPromptError(f"The {what} must be three [start, end) voxel ranges, got {box!r}.") from exc
    if len(pairs) != 3:
        raise InvalidPromptError(f"The {what} must have 3 axes, got {len(pairs)}.")
    for axis, ((lo, hi), size) in enumerate(zip(pairs, shape)):
        if not 0 <= lo < hi <= size:
            raise InvalidPromptError(
                f"The {what} {pairs} does not lie inside the image {tuple(shape)} on axis {axis}: "
                "draw it on the image and give each axis at least one voxel."
            )
    return tuple(pairs)  # type: ignore[return-value]


def _integral(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} coordinate {value!r} is not a number")
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{what} coordinate {value!r} is not a whole voxel index")
    return int(value)


def validate_prompt(prompt: Prompt, shape: tuple[int, ...] | None, capabilities: Capabilities) -> Prompt:
    """Check a prompt against the image and the model; return it with normalised integer coordinates."""
    if shape is None:
        raise NoImageError("No image has been sent to the backend yet: select a volume first.")
    kind = getattr(prompt, "kind", None)
    if kind not in PROMPT_KINDS:
        raise InvalidPromptError(f"Unknown prompt type {kind!r}; expected one of {', '.join(PROMPT_KINDS)}.")
    if kind not in capabilities.prompt_kinds:
        raise InvalidPromptError(f"The model {capabilities.model_id!r} does not support {kind} prompts.")
    if not isinstance(prompt.positive, (bool, np.bool_)):
        raise InvalidPromptError(f"'positive' must be true or false, got {prompt.positive!r}.")
    positive = bool(prompt.positive)
    if isinstance(prompt, Point):
        try:
            coord = tuple(_integral(c, "point") for c in prompt.coord)
        except (TypeError, ValueError) as exc:
            raise InvalidPromptError(f"The point must be three whole voxel indices, got {prompt.coord!r}.") from exc
        if len(coord) != 3 or not all(0 <= c < s for c, s in zip(coord, shape)):
            raise InvalidPromptError(f"The point {coord} lies outside the image {tuple(shape)}.")
        return Point(coord, positive)
    box = normalize_box(prompt.box, shape, kind)
    if isinstance(prompt, BBox):
        if min(box_shape(box)) != 1 and not capabilities.supports_3d_bbox:
            raise InvalidPromptError(
                f"The box {box} is 3D, but the model {capabilities.model_id!r} only takes 2D boxes: "
                "draw the box on one slice."
            )
        return BBox(box, positive)
    mask = prompt.mask
    if not isinstance(mask, np.ndarray) or mask.dtype.kind not in "biu":
        raise InvalidPromptError(f"The {kind} crop must be a boolean or integer array.")
    if mask.shape != box_shape(box):
        raise InvalidPromptError(f"The {kind} crop has shape {mask.shape} but its box {box} has {box_shape(box)}.")
    if not mask.any():
        raise InvalidPromptError(f"The {kind} covers no voxel: draw it over the image.")
    return type(prompt)((mask != 0).astype(np.uint8), box, positive)


def validate_image(image: Any, spacing: Any) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Check an image and its spacing before anything is sent or allocated."""
    if not isinstance(image, np.ndarray) or image.ndim != 3:
        raise InvalidPromptError("The image must be a 3D numpy array.")
    if image.dtype.name not in IMAGE_DTYPES:
        raise InvalidPromptError(f"Image type {image.dtype} is not supported; use one of {', '.join(IMAGE_DTYPES)}.")
    if min(image.shape) < 1:
        raise InvalidPromptError(f"The image {image.shape} is empty.")
    if not image.any():
        raise InvalidPromptError("The image is entirely zero; nnInteractive cannot normalise it.")
    try:
        spacing = tuple(float(s) for s in spacing)
    except (TypeError, ValueError) as exc:
        raise InvalidPromptError(f"Spacing must be three numbers, got {spacing!r}.") from exc
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InvalidPromptError(f"Spacing must be three positive numbers, got {spacing!r}.")
    return image, spacing


def validate_mask(mask: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    """Check a full-size starting mask; return it as uint8 0/1."""
    if shape is None:
        raise NoImageError("No image has been sent to the backend yet: select a volume first.")
    if not isinstance(mask, np.ndarray) or mask.dtype.kind not in "biu":
        raise InvalidPromptError("The starting mask must be a boolean or integer array.")
    if mask.shape != tuple(shape):
        raise InvalidPromptError(f"The starting mask has shape {mask.shape}, the image has {tuple(shape)}.")
    return (mask != 0).astype(np.uint8)


def validate_steps(steps: Any, depth: int | None, action: str) -> int:
    """A number of undo or redo steps: a whole number from 1 to ``depth`` (None: no upper bound)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InvalidPromptError(f"The number of steps to {action} must be a whole number of at least 1, "
                                 f"got {steps!r}.")
    if depth == 0:
        raise UndoError(f"This backend cannot {action}.")
    if depth is not None and steps > depth:
        raise UndoError(f"This backend can {action} at most {depth} step{'s' if depth != 1 else ''}, "
                           f"not {steps}.")
    return int(steps)


def undo_limit_message(action: str, asked: int, available: int, evicted: bool = False) -> str:
    """Why an undo or redo of ``asked`` steps cannot be done when ``available`` can."""
    if available == 0:
        message = f"There is nothing to {action}."
    else:
        message = f"Only {available} step{'s' if available != 1 else ''} can be {action}ne, not {asked}."
    if evicted:
        message += " Older steps were dropped to keep the undo history within its memory budget."
    return message


class Backend(ABC):
    """One interactive segmentation session: one image, one object (mask) at a time.

    Subclasses implement the ``_``-prefixed hooks; the public methods validate input first, so
    every backend rejects the same bad input with the same typed error and changes nothing.
    Calls block; :meth:`start` runs any of them off the caller's thread (for a GUI).

    A backend offered to users declares its ``kind`` (the value stored in settings), ``label``, pip
    ``requirements`` and :meth:`from_config`, and registers with :func:`.backends.registry.register_backend`.
    """

    kind: ClassVar[str] = "backend"
    label: ClassVar[str] = ""
    requirements: ClassVar[tuple[Requirement, ...]] = ()
    # What makes it faster but is not needed: offered once with the install, never required.
    recommended: ClassVar[tuple[Requirement, ...]] = ()
    # A server's backend takes a URL (and an API key); one without runs the model in this process, on this
    # computer's devices, and may download and load a model when it is built.
    needs_url: ClassVar[bool] = True
    # Its form in ``--backend``: the kind itself without a URL; with one, this prefix and the URL.
    url_prefix: ClassVar[str] = ""
    # Names this kind was saved under before (settings, histories): read as this kind.
    former_kinds: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def describe(cls, config: BackendConfig) -> str:
        """The choice in words (never the API key)."""
        key = "with an API key" if config.api_key else "without an API key"
        return f"{cls.label} at {config.url or '(no URL)'} {key}"

    def __init__(self) -> None:
        self._shape: tuple[int, int, int] | None = None
        self._runner: ThreadPoolExecutor | None = None
        self._runner_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(cls, config: BackendConfig) -> Backend:
        """Build this backend from a user's configuration (blocking: it may load a model)."""
        raise NotImplementedError(f"{cls.__name__} is not built from a configuration.")

    # -- queries ---------------------------------------------------------------------------
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What the backend and its model support."""

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        return self._shape

    def upload_progress(self) -> UploadProgress | None:
        """How far the image of a running :meth:`set_image` has got, from any thread; None when nothing is
        being sent (always, for a backend that keeps the image in process)."""
        return None

    def check_connection(self) -> str:
        """A one-line description of what this backend runs on; raises a typed error saying why it cannot run.

        Remote backends override this to reach the server (the UI's "Test connection")."""
        caps = self.capabilities()
        return f"{caps.backend}: model {caps.model_id} on {caps.device}"

    # -- the session -----------------------------------------------------------------------
    def set_image(self, image: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        """Send a new image; the mask and all prompts start empty. The backend keeps it until the next call."""
        image, spacing = validate_image(image, spacing)
        self._set_image(image, spacing)
        self._shape = tuple(image.shape)

    def set_initial_mask(self, mask: np.ndarray | None) -> None:
        """Start a new object from ``mask`` (an existing segment), or from empty with None."""
        if mask is None:
            self.reset()
            return
        self._set_initial_mask(validate_mask(mask, self._shape))

    def prompt(self, prompt: Prompt) -> PromptResult:
        """Apply one prompt to the current object; returns the changed region."""
        if self._shape is None:  # before capabilities(), which a server backend may have to ask for
            raise NoImageError("No image has been sent to the backend yet: select a volume first.")
        return self._prompt(validate_prompt(prompt, self._shape, self.capabilities()))

    def undo(self, steps: int = 1) -> PromptResult:
        """Go back ``steps`` steps (each prompt, starting mask and reset is one); returns the changed region.

        Asking for more steps than the backend keeps raises UndoError and changes nothing."""
        self._require_image()
        return self._undo(validate_steps(steps, self.capabilities().undo_depth, "undo"))

    def redo(self, steps: int = 1) -> PromptResult:
        """Go forward ``steps`` undone steps; a new prompt, mask or reset drops what could be redone.

        Backends without redo (``Capabilities.supports_redo``) and steps that cannot be redone raise
        UndoError and change nothing."""
        self._require_image()
        caps = self.capabilities()
        if not caps.supports_redo:
            raise UndoError(f"The {caps.backend} backend cannot redo.")
        return self._redo(validate_steps(steps, None, "redo"))

    def undo_state(self) -> UndoState:
        """How many steps can be undone and redone now (no image: none)."""
        return self._undo_state() if self._shape is not None else UndoState()

    def reset(self) -> None:
        """Drop all prompts and the mask of the current object; the image stays. Undo brings them back."""
        self._require_image()
        self._reset()

    def get_mask(self) -> np.ndarray:
        """The backend's full current mask (uint8 0/1). Meant for scripts and tests, not for every prompt."""
        self._require_image()
        return self._get_mask()

    def close(self) -> None:
        """Release the session and its resources; the backend is unusable afterwards. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        with self._runner_lock:
            if self._runner is not None:
                self._runner.shutdown(wait=False)
                self._runner = None
        self._close()

    # -- off the caller's thread -------------------------------------------------------------
    def start(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` (usually a bound method of this backend) on the backend's
        request thread and return a Future: a GUI polls it instead of blocking its event loop.
        Calls started this way run one at a time, in order."""
        with self._runner_lock:
            if self._runner is None:
                self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.kind}-requests")
            return self._runner.submit(fn, *args, **kwargs)

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_image(self) -> None:
        if self._shape is None:
            raise NoImageError("No image has been sent to the backend yet: select a volume first.")

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def _set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None: ...

    @abstractmethod
    def _set_initial_mask(self, mask: np.ndarray) -> None: ...

    @abstractmethod
    def _prompt(self, prompt: Prompt) -> PromptResult: ...

    @abstractmethod
    def _undo(self, steps: int) -> PromptResult: ...

    def _redo(self, steps: int) -> PromptResult:
        raise UndoError(f"The {self.kind} backend cannot redo.")

    @abstractmethod
    def _undo_state(self) -> UndoState: ...

    @abstractmethod
    def _reset(self) -> None: ...

    @abstractmethod
    def _get_mask(self) -> np.ndarray: ...

    @abstractmethod
    def _close(self) -> None: ...
