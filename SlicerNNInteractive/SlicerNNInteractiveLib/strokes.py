"""Freehand strokes on slice views (press, drag, release), shown live in a markups curve.

Scribble and Lasso use it: points are sampled from mouse moves at least a few pixels apart, mapped
with the slice's XY -> RAS, and handed over with the slice's normal on release. Events are taken
before the view's own interactor style sees them (priority 10), so the view does not pan meanwhile.
The widget passes the views in, so this file needs neither Qt nor the application.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import vtk

from .prompts import control_points_world, lasso_prompt, scribble_prompt

EVENTS = ("LeftButtonPressEvent", "MouseMoveEvent", "LeftButtonReleaseEvent")


class StrokeRecorder:
    """Records one stroke at a time into a curve node; ``on_finished(points, normal)`` gets each finished stroke."""

    MIN_PIXELS = 3.0

    def __init__(self, on_finished: Callable[[np.ndarray, np.ndarray], None]) -> None:
        self.on_finished = on_finished
        self.node: Any = None  # the markups curve the stroke is drawn into
        self._tags: dict[tuple[Any, str], int] = {}
        self._slice_node: Any = None  # the slice view a stroke is being drawn in
        self._last_xy: tuple[int, int] = (0, 0)  # set by the press that starts a stroke

    def start(self, node, views: Iterable[tuple[Any, Any]]) -> None:
        """Record into ``node`` from ``views``: (interactor, slice node) of each slice view."""
        self.stop()
        self.node = node
        for interactor, slice_node in views:
            for event in EVENTS:
                tag = interactor.AddObserver(
                    event, lambda caller, _e, s=slice_node, e=event: self.on_event(caller, e, s), 10.0
                )
                self._tags[(interactor, event)] = tag

    def stop(self) -> None:
        for (interactor, _event), tag in self._tags.items():
            interactor.RemoveObserver(tag)
        self._tags = {}
        self._slice_node = None
        self.node = None

    def on_event(self, interactor, event: str, slice_node) -> None:
        xy = interactor.GetEventPosition()
        if event == "LeftButtonPressEvent":
            self._slice_node = slice_node
            self.node.RemoveAllControlPoints()
            self._add(xy)
        elif self._slice_node is not slice_node:
            return  # hovering without a stroke, or in another view: let the view handle it
        elif event == "MouseMoveEvent":
            if np.hypot(xy[0] - self._last_xy[0], xy[1] - self._last_xy[1]) >= self.MIN_PIXELS:
                self._add(xy)
        else:
            self._add(xy)
            to_ras = slice_node.GetSliceToRAS()
            normal = np.array([to_ras.GetElement(r, 2) for r in range(3)])
            self._slice_node = None
            self.on_finished(control_points_world(self.node), normal)
        command = interactor.GetCommand(self._tags[(interactor, event)])
        if command is not None:
            command.SetAbortFlag(1)

    def _add(self, xy) -> None:
        ras = self._slice_node.GetXYToRAS().MultiplyPoint((xy[0], xy[1], 0.0, 1.0))[:3]
        self.node.AddControlPointWorld(vtk.vtkVector3d(*ras))
        self._last_xy = xy


def stroke_builder(tool: str, points: np.ndarray, normal: np.ndarray, positive: bool,
                   scribble_thickness: Callable[[], tuple[int, int, int]]) -> Callable:
    """geometry -> the lasso (closed) or scribble prompt of a finished stroke on one slice.

    The scribble's width is the model's preferred thickness, asked for when the prompt is prepared
    (the backend exists by then).
    """
    if tool == "lasso":
        return lambda geometry: lasso_prompt(points, geometry, positive, normal)
    return lambda geometry: scribble_prompt(points, geometry, scribble_thickness(), positive, normal)
