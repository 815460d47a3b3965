"""Oblique volumes: the slice views are found oblique, and one call aligns them so drawings become exact."""

from __future__ import annotations

import numpy as np
import pytest
from slicer_scene import make_scene, oblique_lps_matrix

from SlicerNNInteractiveLib import VolumeGeometry, lasso_prompt
from SlicerNNInteractiveLib.errors import ObliqueViewError
from SlicerNNInteractiveLib.views import align_with_volume, oblique_views, slice_to_ras


@pytest.fixture
def scene_and_views():
    s = make_scene()
    views = []
    for orientation in ("Axial", "Sagittal", "Coronal"):
        node = s.scene.AddNewNodeByClass("vtkMRMLSliceNode")
        node.SetOrientation(orientation)
        views.append(node)
    return s, views


def ring_on(view, geometry: VolumeGeometry) -> np.ndarray:
    """A small ring drawn on the view's plane through the volume's centre."""
    matrix = slice_to_ras(view)
    centre = (geometry.index_to_world @ np.r_[(np.array(geometry.shape) - 1) / 2.0, 1.0])[:3]
    u, v = matrix[:3, 0], matrix[:3, 1]
    return np.array([centre + 3 * (np.cos(a) * u + np.sin(a) * v) for a in np.linspace(0, 6.2, 24)])


def test_aligning_the_views_makes_drawings_on_an_oblique_volume_exact(scene_and_views):
    s, views = scene_and_views
    volume = s.volume(np.ones((16, 20, 24), np.float32), oblique_lps_matrix())
    geometry = VolumeGeometry.from_volume_node(volume)
    assert oblique_views(views, volume) == views
    with pytest.raises(ObliqueViewError, match="Rotate to volume plane"):
        lasso_prompt(ring_on(views[0], geometry), geometry, True, slice_to_ras(views[0])[:3, 2])
    align_with_volume(views, volume)
    assert oblique_views(views, volume) == []
    for view in views:
        lasso = lasso_prompt(ring_on(view, geometry), geometry, True, slice_to_ras(view)[:3, 2])
        assert lasso.mask.any()


def test_views_of_a_straight_volume_are_not_oblique(scene_and_views):
    s, views = scene_and_views
    volume = s.volume(np.ones((8, 8, 8), np.float32), np.diag([0.9, 0.9, 2.0, 1.0]))
    assert oblique_views(views, volume) == []
