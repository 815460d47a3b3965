"""Markups in RAS land on the expected voxels: LPS/oblique IJK-to-RAS, anisotropic spacing, parent transforms.

The expected voxels are computed independently of the Lib: world positions are made from voxel
indices with VTK/MRML's own transform calls (IJKToRAS matrix + the transform node's
TransformPointToWorld), and expected crops are drawn analytically in index space.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk
from slicer_scene import make_scene, oblique_lps_matrix, rigid_transform

from SlicerNNInteractiveLib import (
    PromptError,
    VolumeGeometry,
    box_prompt,
    control_points_world,
    curve_points_world,
    lasso_prompt,
    point_prompt,
    roi_frame_world,
    scribble_prompt,
)

SHAPE = (24, 30, 36)  # (k, j, i)
PLANES = {"axial (k)": 0, "coronal (j)": 1, "sagittal (i)": 2}


@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module", params=["plain", "oblique+transform"])
def volume(request, scene):
    matrix = np.diag([1.0, 1.0, 1.0, 1.0]) if request.param == "plain" else oblique_lps_matrix()
    node = scene.volume(np.ones(SHAPE, np.float32), matrix, name=request.param)
    if request.param != "plain":
        outer = scene.linear_transform(rigid_transform(0.3, (4.0, 2.0, -6.0)), "outer")
        inner = scene.linear_transform(rigid_transform(-0.5, (-3.0, 8.0, 1.0)), "inner")
        inner.SetAndObserveTransformNodeID(outer.GetID())
        node.SetAndObserveTransformNodeID(inner.GetID())
    return node


def world_of(volume_node, kji) -> np.ndarray:
    """Index (k, j, i), possibly fractional -> world RAS, through MRML's own calls (not the Lib)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    k, j, i = kji
    local = matrix.MultiplyPoint([float(i), float(j), float(k), 1.0])[:3]
    to_world = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(volume_node.GetParentTransformNode(), None, to_world)
    return np.array(to_world.TransformPoint(local))


def in_plane_axes(axis: int) -> tuple[int, int]:
    return tuple(a for a in range(3) if a != axis)  # type: ignore[return-value]


def index_point(axis: int, depth: float, row: float, col: float) -> np.ndarray:
    point = np.zeros(3)
    rows, cols = in_plane_axes(axis)
    point[axis], point[rows], point[cols] = depth, row, col
    return point


def normal_of(volume_node, axis: int) -> np.ndarray:
    """The world normal of voxel plane ``axis`` from three world points of that plane."""
    a = world_of(volume_node, index_point(axis, 3, 0, 0))
    b = world_of(volume_node, index_point(axis, 3, 1, 0))
    c = world_of(volume_node, index_point(axis, 3, 0, 1))
    return np.cross(b - a, c - a)


def test_points_land_on_the_voxel_they_were_placed_in(scene, volume):
    geometry = VolumeGeometry.from_volume_node(volume)
    rng = np.random.default_rng(3)
    for _ in range(50):
        voxel = rng.integers(0, SHAPE)
        jitter = rng.uniform(-0.45, 0.45, 3)
        prompt = point_prompt(world_of(volume, voxel + jitter), geometry, positive=False)
        assert prompt.coord == tuple(int(v) for v in voxel)
        assert prompt.positive is False


def test_a_fiducial_under_its_own_transform_is_read_in_world(scene, volume):
    geometry = VolumeGeometry.from_volume_node(volume)
    node = scene.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    shift = scene.linear_transform(rigid_transform(0.7, (10.0, -4.0, 2.0)), "markup transform")
    node.SetAndObserveTransformNodeID(shift.GetID())
    target = world_of(volume, (7, 11, 13))
    local = [0.0, 0.0, 0.0]
    node.TransformPointFromWorld(target, local)
    assert np.linalg.norm(np.array(local) - target) > 1.0
    node.AddControlPoint(local)
    assert point_prompt(control_points_world(node)[0], geometry).coord == (7, 11, 13)


def test_points_outside_the_image_are_refused(volume):
    geometry = VolumeGeometry.from_volume_node(volume)
    with pytest.raises(PromptError, match="outside the image"):
        point_prompt(world_of(volume, (-2, 5, 5)), geometry)


@pytest.mark.parametrize("plane", PLANES)
def test_a_box_drawn_on_a_voxel_plane_gives_that_2d_box(scene, volume, plane):
    axis = PLANES[plane]
    geometry = VolumeGeometry.from_volume_node(volume)
    rows, cols = in_plane_axes(axis)
    # A ROI in the slice plane spanning voxel centres rows 4..9 and cols 6..15 of slice 5, built in world.
    origin = world_of(volume, index_point(axis, 5, 4, 6))
    row_end = world_of(volume, index_point(axis, 5, 9, 6))
    col_end = world_of(volume, index_point(axis, 5, 4, 15))
    row_dir, col_dir = row_end - origin, col_end - origin
    normal = normal_of(volume, axis)
    axes = np.column_stack([row_dir, col_dir, normal])
    axes /= np.linalg.norm(axes, axis=0)
    centre = origin + (row_dir + col_dir) / 2
    size = np.array([np.linalg.norm(row_dir), np.linalg.norm(col_dir), 0.0])
    roi = scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetCenterWorld(centre)
    roi.SetSizeWorld(size)
    matrix = np.eye(4)
    matrix[:3, :3] = axes
    roi.SetAndObserveObjectToNodeMatrix(slicer.util.vtkMatrixFromArray(matrix))
    roi.SetCenterWorld(centre)
    prompt = box_prompt(*roi_frame_world(roi), geometry, positive=True)
    expected = [None, None, None]
    expected[axis], expected[rows], expected[cols] = (5, 6), (4, 10), (6, 16)
    assert prompt.box == tuple(expected)


def test_a_3d_box_covers_the_voxel_centres_inside_it(volume):
    geometry = VolumeGeometry.from_volume_node(volume)
    lo, hi = world_of(volume, (3.4, 5.6, 7.2)), world_of(volume, (9.3, 12.8, 20.5))
    axes = np.column_stack([world_of(volume, e) - world_of(volume, (0, 0, 0)) for e in np.eye(3)])
    size = np.abs(np.linalg.solve(axes / np.linalg.norm(axes, axis=0), hi - lo))
    axes /= np.linalg.norm(axes, axis=0)
    prompt = box_prompt((lo + hi) / 2, axes, size, geometry, three_d=True)
    assert prompt.box == ((4, 10), (6, 13), (8, 21))
    # The same ROI as a 2D box lies on the slice through its centre, across its thinnest axis in voxels.
    flat = box_prompt((lo + hi) / 2, axes, size, geometry)
    assert sum(hi_ - lo_ == 1 for lo_, hi_ in flat.box) == 1


def test_a_box_on_an_oblique_slice_is_refused_with_a_message(volume):
    geometry = VolumeGeometry.from_volume_node(volume)
    tilt = np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]])
    axes = geometry.index_to_world[:3, :3] / np.linalg.norm(geometry.index_to_world[:3, :3], axis=0)
    axes = tilt @ axes
    centre = world_of(volume, (10, 10, 10))
    with pytest.raises(PromptError, match="Rotate to volume plane"):
        box_prompt(centre, axes, np.array([0.1, 8.0, 8.0]), geometry)


def circle_in_plane(volume, axis, depth, centre, radius, count=240):
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return np.array(
        [
            world_of(volume, index_point(axis, depth, centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)))
            for a in angles
        ]
    )


def expected_disk(axis, depth, centre, radius):
    """Voxels with centres inside the circle, as a full-size boolean volume (analytic, index space)."""
    grid = np.indices(SHAPE).astype(float)
    rows, cols = in_plane_axes(axis)
    inside = (grid[rows] - centre[0]) ** 2 + (grid[cols] - centre[1]) ** 2 < radius**2
    return inside & (grid[axis] == depth)


def paste(prompt) -> np.ndarray:
    full = np.zeros(SHAPE, bool)
    full[tuple(slice(lo, hi) for lo, hi in prompt.box)] = prompt.mask.astype(bool)
    return full


@pytest.mark.parametrize("plane", PLANES)
def test_a_lasso_on_a_voxel_plane_fills_the_voxels_inside_it(scene, volume, plane):
    axis = PLANES[plane]
    geometry = VolumeGeometry.from_volume_node(volume)
    # Radius 5.5: no voxel centre within 0.1 voxel of the outline, so the expectation is unambiguous.
    centre = (11.0, 12.0)
    points = circle_in_plane(volume, axis, 7, centre, 5.5)
    curve = scene.scene.AddNewNodeByClass("vtkMRMLMarkupsClosedCurveNode")
    curve.SetCurveTypeToLinear()
    for p in points:
        curve.AddControlPointWorld(vtk.vtkVector3d(*p))
    prompt = lasso_prompt(curve_points_world(curve), geometry, positive=True)
    assert prompt.box[axis] == (7, 8)
    assert prompt.mask.shape[axis] == 1
    np.testing.assert_array_equal(paste(prompt), expected_disk(axis, 7, centre, 5.5))
    # With the slice view's normal given instead of fitted, the same.
    again = lasso_prompt(points, geometry, normal_world=normal_of(volume, axis))
    np.testing.assert_array_equal(paste(again), paste(prompt))


def test_a_lasso_partly_outside_the_image_is_clipped(volume):
    geometry = VolumeGeometry.from_volume_node(volume)
    points = circle_in_plane(volume, 0, 3, (1.0, 2.0), 5.5)
    prompt = lasso_prompt(points, geometry)
    expected = expected_disk(0, 3, (1.0, 2.0), 5.5)
    np.testing.assert_array_equal(paste(prompt), expected)


def test_a_lasso_across_slices_or_on_an_oblique_plane_is_refused(volume):
    geometry = VolumeGeometry.from_volume_node(volume)
    across = np.array([world_of(volume, p) for p in [(2, 3, 3), (6, 10, 3), (2, 10, 12)]])
    with pytest.raises(PromptError):
        lasso_prompt(across, geometry)


@pytest.mark.parametrize("plane", PLANES)
def test_a_scribble_is_as_thick_in_voxels_as_the_model_prefers(scene, volume, plane):
    axis = PLANES[plane]
    rows, cols = in_plane_axes(axis)
    geometry = VolumeGeometry.from_volume_node(volume)
    thickness = (3, 2, 1)  # per (k, j, i) axis
    stroke = [world_of(volume, index_point(axis, 9, 10, c)) for c in (4.2, 9.0, 16.8)]
    node = scene.scene.AddNewNodeByClass("vtkMRMLMarkupsCurveNode")
    node.SetCurveTypeToLinear()
    for p in stroke:
        node.AddControlPointWorld(vtk.vtkVector3d(*p))
    prompt = scribble_prompt(
        control_points_world(node), geometry, thickness, positive=False, normal_world=normal_of(volume, axis)
    )
    # Centre line: row 10, cols 4..17; a brush of width w reaches (w-1)//2 before and w//2 after.
    expected = np.zeros(SHAPE, bool)
    region = [None, None, None]
    t_r, t_c = thickness[rows], thickness[cols]
    region[axis] = slice(9, 10)
    region[rows] = slice(10 - (t_r - 1) // 2, 10 + t_r // 2 + 1)
    region[cols] = slice(4 - (t_c - 1) // 2, 17 + t_c // 2 + 1)
    expected[tuple(region)] = True
    np.testing.assert_array_equal(paste(prompt), expected)
    assert prompt.positive is False


def test_a_non_linear_parent_transform_gets_a_clear_message(scene):
    node = scene.volume(np.ones((8, 8, 8), np.float32), name="warped")
    grid = scene.scene.AddNewNodeByClass("vtkMRMLTransformNode", "warp")
    spline = vtk.vtkThinPlateSplineTransform()
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for p, q in [((0, 0, 0), (0, 0, 1)), ((10, 0, 0), (10, 1, 0)), ((0, 10, 0), (0, 10, 0)), ((0, 0, 10), (1, 0, 10))]:
        source.InsertNextPoint(p)
        target.InsertNextPoint(q)
    spline.SetSourceLandmarks(source)
    spline.SetTargetLandmarks(target)
    grid.SetAndObserveTransformToParent(spline)
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(PromptError, match="non-linear transform"):
        VolumeGeometry.from_volume_node(node)
