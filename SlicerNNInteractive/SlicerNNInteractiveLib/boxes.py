"""Boxes placed with Slicer's two-click ROI tool, turned into a box on the slice the user clicked on.

An ROI placed with two clicks reports PointPositionDefined for its first corner, then once more when
the second click completes it (its centre is then the middle of the two corners). Two things of
Slicer's ROI are not what a 2D box prompt needs, so this class works around them:

* placement left after one click (Esc, right-click, another tool) leaves that corner defined, and
  the next click would complete a box from it: :meth:`BoxPlacement.start` begins with a new node;
* an interactively placed ROI keeps RAS axes whatever the view, so on an oblique volume it never
  matches the voxel grid: the box is built from the two corners in the plane of the slice view
  they were clicked on, with that view's axes, as lasso and scribble use the view's normal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .prompts import roi_frame_world

Frame = tuple[np.ndarray, np.ndarray, np.ndarray]  # centre, axes (3 unit columns), size along each axis
ON_PLANE_MM = 1e-3


class BoxPlacement:
    """Slicer's two-click ROI placement, one fresh ROI node per box, calling ``on_box`` with each finished box.

    A fresh node per box because a completed box ROI takes no more control points (it keeps its
    centre only), and a node left with one corner would complete the next box from it.
    ``slices_to_ras`` gives every slice view's SliceToRAS when a box is completed.
    """

    NAME = "nnInteractive bbox"

    def __init__(self, scene, on_box: Callable[[Frame], None], slices_to_ras: Callable[[], Sequence[np.ndarray]]):
        self.scene = scene
        self.on_box = on_box
        self.slices_to_ras = slices_to_ras
        self.roi: Any = None  # the vtkMRMLMarkupsROINode being placed
        self.corner: np.ndarray | None = None
        self._tag: int | None = None

    def start(self):
        """Box placement (re)starts: a new empty ROI node (returned, to be placed); any old one and its corner go."""
        self.stop()
        self.roi = self.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", self.NAME)
        self.roi.SetSaveWithScene(False)
        self.roi.CreateDefaultDisplayNodes()
        self._tag = self.roi.AddObserver(self.roi.PointPositionDefinedEvent, lambda caller, event: self._defined())
        return self.roi

    def stop(self) -> None:
        if self.roi is not None:
            self.roi.RemoveObserver(self._tag)
            if self.roi.GetScene() is not None:
                self.scene.RemoveNode(self.roi)
        self.roi, self.corner = None, None

    def _defined(self) -> None:
        centre = [0.0, 0.0, 0.0]
        self.roi.GetCenterWorld(centre)
        if self.corner is None:
            self.corner = np.asarray(centre, dtype=float)
            return
        corner, self.corner = self.corner, None
        self.on_box(box_frame(corner, 2.0 * np.asarray(centre, dtype=float) - corner, self.roi, self.slices_to_ras()))


def box_frame(a: np.ndarray, b: np.ndarray, roi_node, slices_to_ras: Sequence[np.ndarray]) -> Frame:
    """The 2D box with corners ``a`` and ``b`` on the slice view they were clicked on, along that view's axes
    (the ROI's own axes when placed in a 3D view)."""
    plane = clicked_slice(a, b, slices_to_ras)
    if plane is None:
        _centre, axes, _size = roi_frame_world(roi_node)
        return (a + b) / 2.0, axes, np.abs(axes.T @ (b - a))
    axes = plane[:3, :3] / np.linalg.norm(plane[:3, :3], axis=0)
    size = np.abs(axes.T @ (b - a))
    size[2] = 0.0  # flat along the view's normal
    return (a + b) / 2.0, axes, size


def clicked_slice(a: np.ndarray, b: np.ndarray, slices_to_ras: Sequence[np.ndarray]) -> np.ndarray | None:
    """The SliceToRAS of the slice view whose plane holds both points, or None."""
    for matrix in slices_to_ras:
        normal = matrix[:3, 2] / np.linalg.norm(matrix[:3, 2])
        if all(abs(float(np.dot(p - matrix[:3, 3], normal))) < ON_PLANE_MM for p in (a, b)):
            return np.asarray(matrix, dtype=float)
    return None
