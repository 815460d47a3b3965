"""``--preview out.png``: three orthogonal slices through the object with the labels overlaid and the
prompts marked, so a person can look instead of reading voxel counts. Written with SimpleITK's PNG
writer: no plotting library needed."""

from __future__ import annotations

import os

import numpy as np

from ..interface import Point, Prompt
from .images import Volume, _sitk

COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                    [70, 240, 240], [240, 50, 230]], dtype=float)
POSITIVE, NEGATIVE = np.array([0, 255, 0]), np.array([255, 0, 255])
MIN_PANEL_PIXELS = 256  # small images are enlarged to at least this many pixels across
ALPHA = 0.45


def write_preview(volume: Volume, labels: np.ndarray, prompts: list[Prompt], path: str | os.PathLike) -> None:
    """Axial, coronal and sagittal slices (array axes k, j, i) through the object, side by side."""
    centre = _centre(labels, prompts, volume.array.shape)
    grey = _window(volume.array)
    spacing = np.array(volume.spacing)
    pixel_mm = min(min(spacing), max(np.array(volume.array.shape) * spacing) / MIN_PANEL_PIXELS)
    panels = []
    for axis in range(3):
        take = [slice(None)] * 3
        take[axis] = centre[axis]
        rgb = _overlay(grey[tuple(take)], labels[tuple(take)])
        _mark(rgb, prompts, axis, centre[axis])
        plane = [a for a in range(3) if a != axis]
        if axis != 0:
            rgb = rgb[::-1]  # k (superior) upwards in coronal and sagittal views
        panels.append(_isotropic(rgb, spacing[plane], pixel_mm))
    height = max(p.shape[0] for p in panels)
    row = np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0))) for p in panels], axis=1)
    sitk = _sitk()
    sitk.WriteImage(sitk.GetImageFromArray(row.astype(np.uint8), isVector=True), str(path))


def _centre(labels: np.ndarray, prompts: list[Prompt], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Through the first point prompt (so it shows), else the labels' median voxel, else the middle."""
    points = [p.coord for p in prompts if isinstance(p, Point)]
    if points:
        return points[0]
    where = np.argwhere(labels)
    if len(where):
        return tuple(int(v) for v in np.median(where, axis=0))  # type: ignore[return-value]
    return tuple(n // 2 for n in shape)  # type: ignore[return-value]


def _window(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image.astype(float) - lo) / max(hi - lo, 1e-6) * 255, 0, 255)


def _overlay(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for value in np.unique(labels[labels > 0]):
        colour = COLOURS[(int(value) - 1) % len(COLOURS)]
        hit = labels == value
        rgb[hit] = (1 - ALPHA) * rgb[hit] + ALPHA * colour
    return rgb


def _mark(rgb: np.ndarray, prompts: list[Prompt], axis: int, index: int) -> None:
    """A cross for points, an outline for boxes and drawn crops, on the slice they lie on."""
    plane = [a for a in range(3) if a != axis]
    for prompt in prompts:
        colour = POSITIVE if prompt.positive else NEGATIVE
        if isinstance(prompt, Point):
            if prompt.coord[axis] != index:
                continue
            r, c = prompt.coord[plane[0]], prompt.coord[plane[1]]
            rgb[max(r - 3, 0):r + 4, c] = colour
            rgb[r, max(c - 3, 0):c + 4] = colour
            continue
        (lo_r, hi_r), (lo_c, hi_c) = prompt.box[plane[0]], prompt.box[plane[1]]
        if not prompt.box[axis][0] <= index < prompt.box[axis][1]:
            continue
        rgb[lo_r, lo_c:hi_c] = rgb[hi_r - 1, lo_c:hi_c] = colour
        rgb[lo_r:hi_r, lo_c] = rgb[lo_r:hi_r, hi_c - 1] = colour


def _isotropic(rgb: np.ndarray, spacing: np.ndarray, pixel: float) -> np.ndarray:
    """Repeat rows and columns so one pixel covers about ``pixel`` millimetres both ways."""
    rows = np.repeat(np.arange(rgb.shape[0]), np.maximum(np.rint(spacing[0] / pixel).astype(int), 1))
    cols = np.repeat(np.arange(rgb.shape[1]), np.maximum(np.rint(spacing[1] / pixel).astype(int), 1))
    return rgb[rows][:, cols]
