"""Where a volume's voxels are in the world: RAS <-> voxel index, in the backend's axis order.

The backend gets ``arrayFromVolume`` arrays, indexed ``[k, j, i]``. Everything here therefore speaks
*index* coordinates ``(k, j, i)``: voxel centres at integers, the volume's full IJK-to-RAS matrix
(LPS, oblique direction cosines, anisotropic spacing) and its linear parent transforms applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vtk

from .errors import ObliqueViewError, PromptError

# (k, j, i, 1) -> (i, j, k, 1): array index order to VTK's IJK order (the permutation is its own inverse).
KJI_TO_IJK = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
# |cos| of the angle between a drawing plane's normal and a voxel plane's normal that still counts as aligned.
ALIGNMENT_TOLERANCE = 1e-3


def matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def array_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def node_to_world(node, what: str) -> np.ndarray:
    """The 4x4 from a transformable node's local RAS to world RAS; a clear error for non-linear transforms."""
    transform = node.GetParentTransformNode()
    if transform is None:
        return np.eye(4)
    if not transform.IsTransformToWorldLinear():
        raise PromptError(
            f"The {what} '{node.GetName()}' is under a non-linear transform, which nnInteractive prompts cannot "
            "follow: harden the transform (Data module, right-click the transform) or remove it, then try again."
        )
    matrix = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(matrix)
    return matrix_to_array(matrix)


@dataclass(frozen=True)
class VolumeGeometry:
    """A volume's voxel grid in the world: ``index_to_world`` maps homogeneous (k, j, i) to world RAS."""

    shape: tuple[int, int, int]
    index_to_world: np.ndarray

    @classmethod
    def from_volume_node(cls, volume_node) -> VolumeGeometry:
        image = volume_node.GetImageData()
        if image is None:
            raise PromptError(f"The volume '{volume_node.GetName()}' has no image data: load an image first.")
        ijk_to_ras = vtk.vtkMatrix4x4()
        volume_node.GetIJKToRASMatrix(ijk_to_ras)
        to_world = node_to_world(volume_node, "volume")
        i, j, k = image.GetDimensions()
        return cls((k, j, i), to_world @ matrix_to_array(ijk_to_ras) @ KJI_TO_IJK)

    @property
    def world_to_index(self) -> np.ndarray:
        return np.linalg.inv(self.index_to_world)

    @property
    def ijk_to_world(self) -> np.ndarray:
        """The same grid in VTK's (i, j, k) order, e.g. for a ``vtkOrientedImageData``."""
        return self.index_to_world @ KJI_TO_IJK

    def to_index(self, points_world: np.ndarray) -> np.ndarray:
        """World RAS points (N, 3) -> continuous (k, j, i) indices (N, 3); voxel centres are integers."""
        points = np.atleast_2d(np.asarray(points_world, dtype=float))
        homogeneous = np.c_[points, np.ones(len(points))]
        return (homogeneous @ self.world_to_index.T)[:, :3]

    def axis_direction(self, axis: int) -> np.ndarray:
        """Unit world direction in which index ``axis`` (0=k, 1=j, 2=i) grows."""
        column = self.index_to_world[:3, axis]
        return column / np.linalg.norm(column)

    def plane_normal(self, axis: int) -> np.ndarray:
        """Unit world normal of the voxel planes of constant index ``axis`` (correct for sheared grids too)."""
        a, b = (q for q in range(3) if q != axis)
        normal = np.cross(self.index_to_world[:3, a], self.index_to_world[:3, b])
        return normal / np.linalg.norm(normal)

    def aligned_axis(self, normal_world: np.ndarray) -> int:
        """The index axis whose voxel planes have this normal, or PromptError for an oblique drawing plane."""
        normal = np.asarray(normal_world, dtype=float)
        length = np.linalg.norm(normal)
        if not np.isfinite(length) or length == 0:
            raise PromptError("The drawing has no plane (all its points lie on a line): draw it on a slice view.")
        normal = normal / length
        for axis in range(3):
            if abs(float(np.dot(normal, self.plane_normal(axis)))) >= 1.0 - ALIGNMENT_TOLERANCE:
                return axis
        raise ObliqueViewError(
            "This slice view is oblique to the volume's voxel grid, so a box, lasso or scribble drawn on it has no "
            "exact voxel slice. Align the views with the volume (the button below, or the slice view menu: 'Rotate to "
            "volume plane') and draw again, or use point prompts."
        )

    def parallel_axis(self, direction_world: np.ndarray) -> int | None:
        """The index axis that runs along ``direction_world`` (either sign), or None."""
        direction = np.asarray(direction_world, dtype=float)
        direction = direction / np.linalg.norm(direction)
        for axis in range(3):
            if abs(float(np.dot(direction, self.axis_direction(axis)))) >= 1.0 - ALIGNMENT_TOLERANCE:
                return axis
        return None
