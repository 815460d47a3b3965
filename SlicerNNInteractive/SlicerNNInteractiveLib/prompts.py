"""Markups in world RAS -> the backend's voxel prompts (Point, BBox, Lasso, Scribble) in (k, j, i) indices.

Boxes, lassos and scribbles are drawn on a slice view, so they live on one voxel plane: the plane's
normal must match one index axis (otherwise PromptError says so instead of producing a wrong crop),
and the crop has size 1 on that axis.
"""

from __future__ import annotations

import numpy as np
import vtk

from nninteractive_slicer.interface import BBox, Box, Lasso, Point, Scribble
from nninteractive_slicer.raster import brush_reach, dilate, draw_polyline, fill_polygon

from .errors import PromptError
from .geometry import VolumeGeometry

EPS = 1e-4  # voxels: a box edge this close to a voxel centre includes it


# -- reading markups nodes -----------------------------------------------------------------------
def control_points_world(node) -> np.ndarray:
    """The defined control points of a markups node in world RAS, (N, 3)."""
    points = []
    for index in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointPositionStatus(index) != node.PositionDefined:
            continue
        position = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(index, position)
        points.append(position)
    return np.array(points, dtype=float).reshape(-1, 3)


def curve_points_world(node) -> np.ndarray:
    """The interpolated curve of a curve / closed-curve node in world RAS: what the user sees."""
    points: vtk.vtkPoints | None = node.GetCurvePointsWorld()
    if points is None or points.GetNumberOfPoints() == 0:
        return control_points_world(node)
    return np.array([points.GetPoint(i) for i in range(points.GetNumberOfPoints())], dtype=float)


def roi_frame_world(roi_node) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, axes as 3 unit column vectors, size along each axis) of a markups ROI in world RAS."""
    centre = [0.0, 0.0, 0.0]
    roi_node.GetCenterWorld(centre)
    axes = np.zeros((3, 3))
    for column, getter in enumerate((roi_node.GetXAxisWorld, roi_node.GetYAxisWorld, roi_node.GetZAxisWorld)):
        axis = [0.0, 0.0, 0.0]
        getter(axis)
        axes[:, column] = np.asarray(axis) / np.linalg.norm(axis)
    size = [0.0, 0.0, 0.0]
    roi_node.GetSizeWorld(size)
    return np.asarray(centre, dtype=float), axes, np.asarray(size, dtype=float)


# -- prompts -------------------------------------------------------------------------------------
def point_prompt(point_world: np.ndarray, geometry: VolumeGeometry, positive: bool = True) -> Point:
    """The voxel whose centre is nearest to the point."""
    index = np.rint(geometry.to_index(point_world)[0]).astype(int)
    if not all(0 <= c < n for c, n in zip(index, geometry.shape)):
        raise PromptError("The point lies outside the image: click inside the volume.")
    return Point(tuple(int(c) for c in index), positive)  # type: ignore[arg-type]


def box_prompt(
    centre_world: np.ndarray,
    axes_world: np.ndarray,
    size_world: np.ndarray,
    geometry: VolumeGeometry,
    positive: bool = True,
    three_d: bool = False,
) -> BBox:
    """The voxels whose centres lie in a box (an ROI's frame); 2D on the slice through its centre unless ``three_d``.

    The box's edges must run along voxel axes; for a 2D box its thinnest axis is the slice normal.
    """
    index_axes = [geometry.parallel_axis(axes_world[:, n]) for n in range(3)]
    if not three_d:
        flat = int(np.argmin([size_world[n] / _step_along(geometry, axes_world[:, n]) for n in range(3)]))
        index_axes[flat] = geometry.aligned_axis(axes_world[:, flat])
    if None in index_axes or len(set(index_axes)) != 3:
        raise PromptError(
            "The box is rotated against the volume's voxel grid: draw it on a slice view aligned with the volume "
            "(slice view menu: 'Rotate to volume plane')."
        )
    signs = np.array(list(np.ndindex(2, 2, 2))) * 2 - 1
    corners = centre_world + (signs * size_world / 2) @ axes_world.T
    index = geometry.to_index(corners)
    centre = geometry.to_index(centre_world)[0]
    lo, hi = index.min(axis=0), index.max(axis=0)
    ranges = [_covered(lo[a], hi[a], centre[a]) for a in range(3)]
    if not three_d:
        normal_axis = index_axes[flat]
        slice_index = int(np.rint(centre[normal_axis]))
        ranges[normal_axis] = (slice_index, slice_index + 1)
    return BBox(_clip_box(ranges, geometry.shape, "box"), positive)


def lasso_prompt(
    points_world: np.ndarray, geometry: VolumeGeometry, positive: bool = True, normal_world: np.ndarray | None = None
) -> Lasso:
    """The voxels whose centres lie inside a closed curve drawn on one voxel plane."""
    axis, slice_index, plane = _on_plane(points_world, geometry, normal_world, "lasso")
    rows, cols = (a for a in range(3) if a != axis)
    r_lo, c_lo = (max(0, int(np.floor(plane[:, n].min()))) for n in (0, 1))
    r_hi = min(geometry.shape[rows], int(np.ceil(plane[:, 0].max())) + 1)
    c_hi = min(geometry.shape[cols], int(np.ceil(plane[:, 1].max())) + 1)
    if r_hi <= r_lo or c_hi <= c_lo:
        raise PromptError("The lasso lies outside the image: draw it over the volume.")
    mask2d = fill_polygon(plane - [r_lo, c_lo], (r_hi - r_lo, c_hi - c_lo))
    return Lasso(*_crop(mask2d, axis, slice_index, (r_lo, c_lo), "lasso"), positive)


def scribble_prompt(
    points_world: np.ndarray,
    geometry: VolumeGeometry,
    thickness: tuple[int, int, int],
    positive: bool = True,
    normal_world: np.ndarray | None = None,
) -> Scribble:
    """A stroke through the points on one voxel plane, ``thickness[axis]`` voxels wide along each in-plane axis.

    The width is the model's preferred scribble thickness in voxels, so a stroke on a sagittal or
    coronal slice of an anisotropic volume is as wide (in voxels) as the model was trained with.
    """
    axis, slice_index, plane = _on_plane(points_world, geometry, normal_world, "scribble")
    rows, cols = (a for a in range(3) if a != axis)
    widths = (int(thickness[rows]), int(thickness[cols]))
    reach = [brush_reach(w) for w in widths]
    lo = [int(np.floor(plane[:, n].min())) - reach[n][0] for n in (0, 1)]
    hi = [int(np.ceil(plane[:, n].max())) + reach[n][1] + 1 for n in (0, 1)]
    stroke = dilate(draw_polyline(plane - lo, (hi[0] - lo[0], hi[1] - lo[1])), widths)
    # Keep only the part inside the image.
    r0, c0 = max(0, -lo[0]), max(0, -lo[1])
    r1 = min(stroke.shape[0], geometry.shape[rows] - lo[0])
    c1 = min(stroke.shape[1], geometry.shape[cols] - lo[1])
    if r1 <= r0 or c1 <= c0:
        raise PromptError("The scribble lies outside the image: draw it over the volume.")
    stroke = stroke[r0:r1, c0:c1]
    return Scribble(*_crop(stroke, axis, slice_index, (lo[0] + r0, lo[1] + c0), "scribble"), positive)


# -- helpers -------------------------------------------------------------------------------------
def _step_along(geometry: VolumeGeometry, direction: np.ndarray) -> float:
    """The world length of one voxel step along the index axis that best matches ``direction``."""
    axis = int(np.argmax([abs(float(np.dot(direction, geometry.axis_direction(a)))) for a in range(3)]))
    return float(np.linalg.norm(geometry.index_to_world[:3, axis]))


def _covered(lo: float, hi: float, centre: float) -> tuple[int, int]:
    """Half-open range of voxel centres in [lo, hi]; the nearest voxel when the range is thinner than one."""
    first, last = int(np.ceil(lo - EPS)), int(np.floor(hi + EPS))
    if last < first:
        first = last = int(np.rint(centre))
    return first, last + 1


def _clip_box(ranges: list[tuple[int, int]], shape: tuple[int, int, int], what: str) -> Box:
    clipped = tuple((max(0, lo), min(n, hi)) for (lo, hi), n in zip(ranges, shape))
    if any(hi <= lo for lo, hi in clipped):
        raise PromptError(f"The {what} lies outside the image: draw it over the volume.")
    return clipped  # type: ignore[return-value]


def _on_plane(
    points_world: np.ndarray, geometry: VolumeGeometry, normal_world: np.ndarray | None, what: str
) -> tuple[int, int, np.ndarray]:
    """(normal index axis, slice index, 2D in-plane coordinates (N, 2)) of points drawn on one voxel plane."""
    points = np.asarray(points_world, dtype=float).reshape(-1, 3)
    if len(points) == 0:
        raise PromptError(f"The {what} has no points: draw it on a slice view.")
    if normal_world is None:
        normal_world = _fitted_normal(points, what)
    axis = geometry.aligned_axis(normal_world)
    index = geometry.to_index(points)
    depth = index[:, axis]
    if depth.max() - depth.min() >= 1.0:
        raise PromptError(f"The {what} is not on one slice: draw it on a single slice view.")
    slice_index = int(np.rint(depth.mean()))
    if not 0 <= slice_index < geometry.shape[axis]:
        raise PromptError(f"The {what} lies outside the image: draw it over the volume.")
    return axis, slice_index, index[:, [a for a in range(3) if a != axis]]


def _fitted_normal(points: np.ndarray, what: str) -> np.ndarray:
    if len(points) < 3:
        raise PromptError(f"The {what} needs at least 3 points to tell its plane: draw a longer {what}.")
    _, singular, vt = np.linalg.svd(points - points.mean(axis=0))
    if singular[1] <= 1e-9 * max(singular[0], 1.0):
        raise PromptError(f"The {what} is a straight line, so its slice is unknown: draw it on a slice view.")
    return vt[2]


def _crop(
    mask2d: np.ndarray, axis: int, slice_index: int, origin: tuple[int, int], what: str
) -> tuple[np.ndarray, Box]:
    """Trim a 2D mask to its set voxels and lift it to a 3D crop + box with size 1 on ``axis``."""
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    if len(rows) == 0:
        raise PromptError(f"The {what} covers no voxel: draw it larger, over the image.")
    mask2d = mask2d[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    in_plane = iter(
        [
            (origin[0] + int(rows[0]), origin[0] + int(rows[-1]) + 1),
            (origin[1] + int(cols[0]), origin[1] + int(cols[-1]) + 1),
        ]
    )
    box = tuple((slice_index, slice_index + 1) if a == axis else next(in_plane) for a in range(3))
    return np.expand_dims(mask2d.astype(np.uint8), axis), box  # type: ignore[return-value]
