"""The benchmark's cases: the paper's three image sizes and one seeded prompt script for every backend."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

from synthetic import blob_centre, disk_crop, mr_like_image  # noqa: E402

from nninteractive_slicer.interface import BBox, Lasso, Point, Prompt, Scribble  # noqa: E402

# Array order (K, J, I) as Slicer's arrayFromVolume gives it: the paper's 64x64x32, 128x128x65, 256x256x130.
SIZES: dict[str, tuple[int, int, int]] = {"S": (32, 64, 64), "M": (65, 128, 128), "L": (130, 256, 256)}
# MRBrainTumor-like voxel size at L, coarser at the downsampled sizes; spacing is in array order too.
SPACING: dict[str, tuple[float, float, float]] = {"S": (5.2, 3.75, 3.75), "M": (2.6, 1.875, 1.875),
                                                  "L": (1.3, 0.9375, 0.9375)}
PROMPT_KINDS = ("point", "bbox", "scribble", "lasso")


def image(size: str) -> np.ndarray:
    return mr_like_image(SIZES[size], seed=42)


def prompts(size: str, kind: str, repeats: int, seed: int = 0) -> list[Prompt]:
    """``repeats`` prompts of one kind around the blob, jittered, on axial planes; every third one negative."""
    shape = SIZES[size]
    rng = np.random.default_rng([seed, PROMPT_KINDS.index(kind), sum(shape)])
    centre = np.array(blob_centre(shape))
    half = np.maximum(np.array(shape) // 6, 2)
    out: list[Prompt] = []
    for i in range(repeats):
        c = np.clip(centre + rng.integers(-2, 3, 3), half, np.array(shape) - half - 1)
        positive = i % 3 != 2
        box = ((int(c[0]), int(c[0]) + 1),) + tuple((int(c[k] - half[k]), int(c[k] + half[k] + 1)) for k in (1, 2))
        if kind == "point":
            out.append(Point(tuple(int(v) for v in c), positive))
        elif kind == "bbox":
            out.append(BBox(box, positive))
        else:
            crop = disk_crop((2 * int(half[1]) + 1, 2 * int(half[2]) + 1), 0, filled=kind == "lasso")
            out.append((Lasso if kind == "lasso" else Scribble)(crop, box, positive))
    return out
