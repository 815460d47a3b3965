"""Boxes from Slicer's two-click ROI placement, replayed on real MRML nodes (slicer-core).

Replaying placement: each click adds a control point to the ROI node, as Slicer's markups widget does;
the second click completes the box (the node then holds one point and reports its centre), and a click
on a completed box is refused by the node ("more than maximum number of control points").
"""

from __future__ import annotations

import numpy as np
import pytest
import vtk
from slicer_scene import make_scene, oblique_lps_matrix

from SlicerNNInteractiveLib import PromptError, VolumeGeometry, box_prompt
from SlicerNNInteractiveLib.boxes import BoxPlacement

SHAPE = (12, 20, 24)


@pytest.fixture
def scene():
    return make_scene()


@pytest.fixture
def volume(scene):
    return scene.volume(np.ones(SHAPE, np.float32), oblique_lps_matrix())


class Placing:
    """A BoxPlacement on the scene, and the boxes it returned."""

    def __init__(self, scene, slices_to_ras) -> None:
        self.boxes: list = []
        self.placement = BoxPlacement(scene.scene, self.boxes.append, lambda: slices_to_ras)

    def click(self, world) -> None:
        self.placement.roi.AddControlPointWorld(vtk.vtkVector3d(*world))


def world_of(volume, kji) -> np.ndarray:
    g = VolumeGeometry.from_volume_node(volume)
    return (g.index_to_world @ np.r_[np.asarray(kji, float), 1.0])[:3]


def volume_plane(volume, k: int) -> np.ndarray:
    """SliceToRAS of a slice view rotated to the volume's plane (as 'Rotate to volume plane'), on slice k."""
    g = VolumeGeometry.from_volume_node(volume)
    matrix = np.eye(4)
    for column, axis in enumerate((2, 1, 0)):  # i, j in the view, k along its normal
        matrix[:3, column] = g.axis_direction(axis)
    matrix[:3, 3] = world_of(volume, (k, 0, 0))
    return matrix


def test_a_box_after_an_abandoned_box_uses_only_its_own_corners(scene, volume):
    plane = volume_plane(volume, 5)
    placing = Placing(scene, [np.eye(4), plane])
    placing.placement.start()
    placing.click(world_of(volume, (5, 2, 2)))  # first corner, then Esc: place mode ends
    placing.placement.start()  # the box tool again
    a, b = world_of(volume, (5, 4, 6)), world_of(volume, (5, 9, 15))
    placing.click(a)
    placing.click(b)
    assert len(placing.boxes) == 1, "the second box was not completed from its own two clicks"
    centre, _axes, _size = placing.boxes[0]
    np.testing.assert_allclose(centre, (a + b) / 2, atol=1e-6)
    placing.placement.start()  # and the next box still works
    placing.click(a)
    placing.click(world_of(volume, (5, 7, 9)))
    assert len(placing.boxes) == 2
    assert scene.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsROINode") == 1  # old boxes' nodes are gone


def test_a_box_on_an_oblique_volume_lies_in_the_clicked_slice(scene, volume):
    plane = volume_plane(volume, 5)
    placing = Placing(scene, [np.eye(4), plane])
    placing.placement.start()
    placing.click(world_of(volume, (5, 4, 6)))
    placing.click(world_of(volume, (5, 9, 15)))
    (frame,) = placing.boxes
    geometry = VolumeGeometry.from_volume_node(volume)
    assert box_prompt(*frame, geometry).box == ((5, 6), (4, 10), (6, 16))


def test_a_box_on_a_slice_rotated_against_the_volume_is_refused(scene, volume):
    plane = volume_plane(volume, 5)
    turn = np.eye(4)
    turn[:3, :3] = [[np.cos(0.4), -np.sin(0.4), 0], [np.sin(0.4), np.cos(0.4), 0], [0, 0, 1]]
    rotated = plane @ turn  # same plane, rotated within it
    placing = Placing(scene, [rotated])
    placing.placement.start()
    placing.click(world_of(volume, (5, 4, 6)))
    placing.click(world_of(volume, (5, 9, 15)))
    with pytest.raises(PromptError, match="Rotate to volume plane"):
        box_prompt(*placing.boxes[0], VolumeGeometry.from_volume_node(volume))
