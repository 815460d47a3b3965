"""Boxes placed with Slicer's two-click ROI tool, turned into a box on the slice the user clicked on.

An ROI placed with two clicks reports PointPositionDefined for its first corner, then once more when
the second click completes it (its centre is then the middle of the two corners).
"""

from __future__ import annotations

import numpy as np

from .prompts import roi_frame_world

Frame = tuple[np.ndarray, np.ndarray, np.ndarray]  # centre, axes (3 unit columns), size along each axis


class BoxPlacement:
    """Follows one ROI node through two-click placements; :meth:`defined` returns the box once both corners are in."""

    def __init__(self, roi_node) -> None:
        self.roi = roi_node
        self.corner: np.ndarray | None = None

    def start(self) -> None:
        """Box placement (re)starts: the next click is a first corner."""
        self.corner = None

    def defined(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Call on PointPositionDefined: None after the first corner, (first, second corner) after the second."""
        centre = [0.0, 0.0, 0.0]
        self.roi.GetCenterWorld(centre)
        if self.corner is None:
            self.corner = np.asarray(centre, dtype=float)
            return None
        corner, self.corner = self.corner, None
        return corner, 2.0 * np.asarray(centre, dtype=float) - corner


def box_frame(corner_a: np.ndarray, corner_b: np.ndarray, roi_node) -> Frame:
    """The box between two corners, along the ROI's axes."""
    _centre, axes, _size = roi_frame_world(roi_node)
    size = np.abs(axes.T @ (corner_b - corner_a))
    return (corner_a + corner_b) / 2.0, axes, size
