"""Synthetic test images and prompt scripts shared by the tests and the benchmarks.

MR-like: a smooth background tissue, a bright ellipsoidal "lesion" to segment and Rician-like
noise, stored as float32 with non-trivial intensities (nnInteractive must see the originals).
"""

from __future__ import annotations

import numpy as np

from nninteractive_slicer.interface import Backend, BBox, Lasso, Point, Prompt, Scribble


def mr_like_image(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A float32 volume with a bright blob around 45% of each axis."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    centre = (-0.1, -0.1, -0.1)
    radius = (0.35, 0.3, 0.25)
    blob = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radius)) < 1
    body = sum(g**2 for g in grids) < 0.9
    image = 300.0 * body + 500.0 * blob + 40.0 * grids[0]
    image += rng.normal(0.0, 25.0, shape)
    return np.abs(image).astype(np.float32)


def blob_centre(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(round((1 - 0.1) / 2 * (n - 1))) for n in shape)  # type: ignore[return-value]


def disk_crop(shape2d: tuple[int, int], axis: int, filled: bool) -> np.ndarray:
    """A 3D crop with size 1 on ``axis``: a filled disk (lasso) or its ring (scribble)."""
    a, b = np.ogrid[: shape2d[0], : shape2d[1]]
    ca, cb = (shape2d[0] - 1) / 2, (shape2d[1] - 1) / 2
    r = ((a - ca) / max(ca, 1)) ** 2 + ((b - cb) / max(cb, 1)) ** 2
    disk = (r <= 1.0) if filled else ((r <= 1.0) & (r >= 0.5))
    return np.expand_dims(disk.astype(np.uint8), axis)


def prompt_script(shape: tuple[int, int, int], seed: int = 0, count: int = 8) -> list[Prompt]:
    """A seeded mix of all four prompt types, positive and negative, around the blob."""
    rng = np.random.default_rng(seed)
    centre = np.array(blob_centre(shape))
    prompts: list[Prompt] = []
    kinds = ["point", "bbox", "scribble", "lasso"]
    for i in range(count):
        kind = kinds[i % 4]
        positive = i % 3 != 2
        jitter = rng.integers(-2, 3, 3)
        c = np.clip(centre + jitter, 4, np.array(shape) - 5)
        axis = int(rng.integers(0, 3))
        half = np.maximum(np.array(shape) // 8, 2)
        lo = np.clip(c - half, 0, None)
        hi = np.minimum(c + half + 1, shape)
        lo[axis], hi[axis] = c[axis], c[axis] + 1
        box = tuple((int(a), int(b)) for a, b in zip(lo, hi))
        if kind == "point":
            prompts.append(Point(tuple(int(v) for v in c), positive))
        elif kind == "bbox":
            prompts.append(BBox(box, positive))
        else:
            plane = tuple(int(hi[k] - lo[k]) for k in range(3) if k != axis)
            crop = disk_crop(plane, axis, filled=kind == "lasso")
            prompts.append((Lasso if kind == "lasso" else Scribble)(crop, box, positive))
    return prompts


# Scenes for the ``rule`` synthetic model, which segments exactly the voxels brighter than BRIGHT_Z
# standard deviations above the image mean: the answer to a prompt is known from the image.
PATCH = 64  # the tiny models' patch size per axis


def bright_box_image(shape: tuple[int, int, int], box: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """A flat image (1.0) with one bright box (2.0), and the box as a uint8 mask."""
    image = np.ones(shape, np.float32)
    bright = np.zeros(shape, np.uint8)
    bright[tuple(slice(lo, hi) for lo, hi in box)] = 1
    image[bright == 1] = 2.0
    return image, bright


# A rod longer than a patch, clicked near one end: the first prediction cuts it at the patch's border,
# AutoZoom zooms out once (1.5x), refinement then covers the rod with 5 patches, the last placed by
# nnInteractive's random sampling fallback (measured with nnInteractive 2.6; the tests check each step).
ROD_SHAPE = (96, 64, 64)
ROD_BOX = ((34, 80), (26, 38), (26, 38))
ROD_CLICK = Point((40, 32, 32))

# A cube well inside one patch: no zoom-out, so prompts on it take one forward pass.
CUBE_SHAPE = (64, 64, 64)
CUBE_BOX = ((20, 44), (20, 44), (20, 44))
CUBE_CENTRE = (32, 32, 32)


def scripted_mask(backend: Backend, image: np.ndarray, count: int, seed: int = 7) -> np.ndarray:
    """The mask ``backend`` makes of ``image`` from :func:`prompt_script`, run without interruption."""
    backend.set_image(image)
    for prompt in prompt_script(image.shape, seed=seed, count=count):
        backend.prompt(prompt)
    return backend.get_mask()
