"""The typed history of one segment: which image and model, where it started, and every step since.

In memory everything is in the backend's array order ``(k, j, i)`` and uses the interface's prompt
types, so a history replays straight into any backend. :mod:`.io` turns it into the documented
JSON file (``docs/history.md``), which lists axes in ``(i, j, k)`` order as Slicer and ITK show them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..interface import Box, Capabilities, Prompt
from .codec import mask_digest, voxel_digest

StepOp = Literal["prompt", "undo", "redo", "reset", "set_mask"]
STEP_OPS: tuple[StepOp, ...] = ("prompt", "undo", "redo", "reset", "set_mask")


@dataclass(frozen=True, eq=False)
class ImageIdentity:
    """The image a history belongs to; ``index_to_ras`` maps homogeneous (k, j, i) to world RAS mm."""

    digest: str
    shape: tuple[int, int, int]
    dtype: str
    spacing: tuple[float, float, float]
    index_to_ras: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray, index_to_ras: np.ndarray, spacing: tuple[float, float, float] | None = None,
           digest: str | None = None) -> ImageIdentity:
        """Identify an image array; spacing defaults to the matrix's column lengths."""
        matrix = np.asarray(index_to_ras, dtype=float)
        if spacing is None:
            columns = np.linalg.norm(matrix[:3, :3], axis=0)
            spacing = (float(columns[0]), float(columns[1]), float(columns[2]))
        return cls(digest or voxel_digest(image), tuple(int(n) for n in image.shape),  # type: ignore[arg-type]
                   image.dtype.name, tuple(float(s) for s in spacing), matrix)  # type: ignore[arg-type]

    def to_ras(self, index: np.ndarray) -> tuple[float, float, float]:
        point = self.index_to_ras @ np.r_[np.asarray(index, dtype=float), 1.0]
        return tuple(float(v) for v in point[:3])  # type: ignore[return-value]

    def mismatch(self, other: ImageIdentity) -> str | None:
        """Why ``other`` is not this image, in words, or None when it is."""
        if other.shape != self.shape:
            return f"its size is {other.shape[::-1]} voxels, the history's image has {self.shape[::-1]}"
        if other.digest != self.digest:
            return "its voxel values differ from the history's image"
        if not np.allclose(other.index_to_ras, self.index_to_ras, atol=1e-4):
            return "it lies elsewhere in space (its IJK-to-RAS matrix differs)"
        return None


@dataclass(frozen=True)
class ModelIdentity:
    """The model that produced the steps; ``checkpoint_digest`` where the backend can know it."""

    id: str
    version: str | None = None
    checkpoint_digest: str | None = None

    @classmethod
    def of(cls, capabilities: Capabilities) -> ModelIdentity:
        version = capabilities.extra.get("server_version")
        return cls(capabilities.model_id, None if version is None else str(version),
                   capabilities.extra.get("checkpoint_digest"))


@dataclass(frozen=True, eq=False)
class StepResult:
    """The object's mask after a step: its digest, and the region that changed with its new voxels."""

    mask_digest: str
    box: Box | None = None
    patch: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Step:
    """One thing done to the object. ``prompt`` for op "prompt", ``mask`` (the whole new mask) for "set_mask"."""

    op: StepOp
    result: StepResult
    prompt: Prompt | None = None
    mask: np.ndarray | None = None


@dataclass(eq=False)
class History:
    """Image, model, backend kind, starting mask (or None) and the steps, in order."""

    image: ImageIdentity
    model: ModelIdentity
    backend: str
    initial_mask: np.ndarray | None = None
    steps: list[Step] = field(default_factory=list)
    name: str = ""

    @property
    def initial_digest(self) -> str | None:
        return None if self.initial_mask is None else mask_digest(self.initial_mask)

    @property
    def final_digest(self) -> str:
        """The digest of the mask the steps end with."""
        if self.steps:
            return self.steps[-1].result.mask_digest
        return mask_digest(self.start_mask())

    def start_mask(self) -> np.ndarray:
        if self.initial_mask is not None:
            return self.initial_mask.copy()
        return np.zeros(self.image.shape, dtype=np.uint8)

    def prompt_count(self) -> int:
        return sum(step.op == "prompt" for step in self.steps)
