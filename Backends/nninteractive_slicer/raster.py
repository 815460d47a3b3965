"""2D rasterisation on a voxel plane: filled polygons (lasso) and thick polylines (scribble).

Coordinates are continuous 2D voxel indices ``(row, col)`` with voxel centres at integers; a voxel
belongs to a shape when its centre does. Plain numpy, so the Lib needs no image library.
"""

from __future__ import annotations

import numpy as np


def fill_polygon(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask of ``shape`` marking voxel centres inside the closed polygon (even-odd rule)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    rows = rows.astype(float).ravel()
    cols = cols.astype(float).ravel()
    inside = np.zeros(rows.shape, dtype=bool)
    r0, c0 = vertices[:, 0], vertices[:, 1]
    r1, c1 = np.roll(r0, -1), np.roll(c0, -1)
    for ra, ca, rb, cb in zip(r0, c0, r1, c1):
        if ra == rb:
            continue
        crosses = (ra > rows) != (rb > rows)
        col_at = ca + (rows - ra) * (cb - ca) / (rb - ra)
        inside ^= crosses & (cols < col_at)
    # Centres exactly on the outline count as inside, so a thin lasso still covers what it encircles.
    inside |= _on_outline(vertices, rows, cols)
    return inside.reshape(shape)


def _on_outline(vertices: np.ndarray, rows: np.ndarray, cols: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    on = np.zeros(rows.shape, dtype=bool)
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0)):
        d = b - a
        length2 = float(d @ d)
        if length2 == 0:
            on |= (np.abs(rows - a[0]) < eps) & (np.abs(cols - a[1]) < eps)
            continue
        t = np.clip(((rows - a[0]) * d[0] + (cols - a[1]) * d[1]) / length2, 0.0, 1.0)
        on |= np.hypot(rows - (a[0] + t * d[0]), cols - (a[1] + t * d[1])) < eps
    return on


def draw_polyline(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask of ``shape`` with the voxels nearest to the polyline through ``points`` set."""
    mask = np.zeros(shape, dtype=bool)
    segments = list(zip(points[:-1], points[1:])) or [(points[0], points[0])]
    for a, b in segments:
        steps = max(2, int(np.ceil(2 * np.abs(b - a).max())) + 1)  # at most half a voxel apart
        samples = np.rint(a + np.linspace(0.0, 1.0, steps)[:, None] * (b - a)).astype(int)
        keep = (samples >= 0).all(axis=1) & (samples < np.array(shape)).all(axis=1)
        mask[samples[keep, 0], samples[keep, 1]] = True
    return mask


def dilate(mask: np.ndarray, thickness: tuple[int, int]) -> np.ndarray:
    """Widen a 2D line to ``thickness`` voxels per axis (a rectangular brush centred on each voxel)."""
    out = mask.copy()
    for axis, width in enumerate(thickness):
        width = max(int(width), 1)
        grown = np.zeros_like(out)
        for offset in range(-((width - 1) // 2), width // 2 + 1):
            grown |= _shift(out, offset, axis)
        out = grown
    return out


def brush_reach(width: int) -> tuple[int, int]:
    """How far (before, after) a brush of ``width`` voxels reaches around its centre voxel."""
    width = max(int(width), 1)
    return (width - 1) // 2, width // 2


def _shift(mask: np.ndarray, offset: int, axis: int) -> np.ndarray:
    if offset == 0:
        return mask
    out = np.zeros_like(mask)
    n = mask.shape[axis]
    src = [slice(None)] * 2
    dst = [slice(None)] * 2
    if offset > 0:
        src[axis], dst[axis] = slice(0, n - offset), slice(offset, n)
    else:
        src[axis], dst[axis] = slice(-offset, n), slice(0, n + offset)
    out[tuple(dst)] = mask[tuple(src)]
    return out
