"""Slice views and the volume's voxel grid: the one-click fix for oblique volumes.

Many MRI series are oblique to the patient axes, so Slicer's default axial, sagittal and coronal
views cut their voxels at an angle, and a box, lasso or scribble drawn there has no exact voxel
slice. Rotating each view to the volume's nearest voxel plane (Slicer's "Rotate to volume plane")
makes them exact again.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import ObliqueViewError
from .geometry import VolumeGeometry


def slice_to_ras(slice_node) -> np.ndarray:
    matrix = slice_node.GetSliceToRAS()
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def oblique_views(slice_nodes: Iterable, volume_node) -> list:
    """The slice views whose plane is not one of the volume's voxel planes."""
    geometry = VolumeGeometry.from_volume_node(volume_node)
    found = []
    for node in slice_nodes:
        try:
            geometry.aligned_axis(slice_to_ras(node)[:3, 2])
        except ObliqueViewError:
            found.append(node)
    return found


def align_with_volume(slice_nodes: Iterable, volume_node) -> None:
    """Rotate every slice view to the volume's nearest voxel plane (the slice view menu's "Rotate to volume plane")."""
    for node in slice_nodes:
        node.RotateToVolumePlane(volume_node)
