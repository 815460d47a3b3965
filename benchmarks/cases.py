"""The benchmark's cases: the paper's three image sizes and one seeded prompt script for every backend."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

from synthetic import blob_centre, disk_crop, mr_like_image  # noqa: E402

from nninteractive_slicer.interface import BBox, Lasso, Point, Prompt, Scribble  # noqa: E402

# Array order (K, J, I) as Slicer's arrayFromVolume gives it: the paper's 64x64x32, 128x128x65, 256x256x130,
# and XL, a chest-abdomen CT of 512x512x400 (105 M voxels, int16).
SIZES: dict[str, tuple[int, int, int]] = {"S": (32, 64, 64), "M": (65, 128, 128), "L": (130, 256, 256),
                                          "XL": (400, 512, 512)}
# MRBrainTumor-like voxel size at L, coarser at the downsampled sizes; a CT's at XL; in array order too.
SPACING: dict[str, tuple[float, float, float]] = {"S": (5.2, 3.75, 3.75), "M": (2.6, 1.875, 1.875),
                                                  "L": (1.3, 0.9375, 0.9375), "XL": (1.25, 0.78, 0.78)}
PROMPT_KINDS = ("point", "bbox", "scribble", "lasso")


def image(size: str, seed: int = 42) -> np.ndarray:
    """The case's volume; another ``seed`` gives another image of the same kind (one the server never saw)."""
    return ct_like_image(SIZES[size], seed) if size == "XL" else mr_like_image(SIZES[size], seed=seed)


def ct_like_image(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """An int16 CT in Hounsfield units with the structure that decides how it compresses and preprocesses:
    air around an elliptic body (fat rim, soft tissue), lungs that shrink towards the abdomen, a spine and a
    rib ring, a liver, a contrast-enhanced lesion where the prompts land, a table, and ~12 HU noise."""
    rng = np.random.default_rng(seed)
    depth, rows, cols = shape
    y, x = np.ogrid[-1 : 1 : rows * 1j, -1 : 1 : cols * 1j]
    body = (x / 0.85) ** 2 + (y / 0.62) ** 2
    base = np.where(body < 1.0, np.where(body < 0.8, 40.0, -90.0), -1000.0).astype(np.float32)  # fat, soft tissue
    base[np.abs(y[:, 0] - 0.9) < 0.015, :] = 200.0  # table
    vertebra = (x**2 + (y - 0.42) ** 2) < 0.012
    ribs = (body > 0.72) & (body < 0.78) & (np.abs(np.sin(14 * np.arctan2(y, x))) > 0.6)
    lungs = np.minimum((x - 0.38) ** 2, (x + 0.38) ** 2) + ((y + 0.05) / 1.3) ** 2  # squared radius to a lung axis
    liver = ((x + 0.3) / 0.3) ** 2 + ((y + 0.1) / 0.25) ** 2 < 1
    centre = np.array(blob_centre(shape), np.float64) / (np.array(shape) - 1) * 2 - 1
    lesion = ((y - centre[1]) / 0.1) ** 2 + ((x - centre[2]) / 0.1) ** 2
    out = np.empty(shape, np.int16)
    for k in range(depth):
        z = k / max(depth - 1, 1) * 2 - 1  # -1 feet ... 1 head
        hu = base.copy()
        hu[lungs < max(0.0, 0.32 * (z + 0.1) / 1.1) ** 2] = -850.0
        if z < 0.2:
            hu[liver] = 60.0
        if z > -0.2:
            hu[ribs] = 500.0
        hu[vertebra] = 700.0
        hu[lesion < 1 - ((z - centre[0]) / 0.12) ** 2] = 140.0  # enhancing lesion
        hu += rng.standard_normal((rows, cols), np.float32) * 12.0
        np.clip(hu, -1024, 3071, out=hu)
        out[k] = hu
    return out


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
