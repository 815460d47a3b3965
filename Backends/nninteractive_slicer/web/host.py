"""The web app's host of SlicerNNInteractiveLogic: the page's tools bound to the same Lib the Slicer widget uses.

Everything a prompt does (markups -> voxel prompt -> backend -> segment, undo and redo, histories) is the
Lib's; this class only binds what trame-slicer gives (its scene, segment editor, slice views and undo
stack) to the Lib's host boundary and runs the Logic's poll as an asyncio task instead of a Qt timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import slicer
from undo_stack import UndoStack

from .lib import ensure_lib_importable

ensure_lib_importable()

from SlicerNNInteractiveLib import REDO, UNDO, control_points_world, nodes, point_prompt  # noqa: E402
from SlicerNNInteractiveLib.async_poll import ASYNC_POLL_WAIT, poll_until_idle  # noqa: E402
from SlicerNNInteractiveLib.automatic import BackendChoice  # noqa: E402
from SlicerNNInteractiveLib.boxes import BoxPlacement  # noqa: E402
from SlicerNNInteractiveLib.logic import Event, QueuedPrompt, SlicerNNInteractiveLogic  # noqa: E402
from SlicerNNInteractiveLib.place_mode import PlaceMode  # noqa: E402
from SlicerNNInteractiveLib.prompts import box_prompt  # noqa: E402
from SlicerNNInteractiveLib.segment_writer import UndoHooks  # noqa: E402
from SlicerNNInteractiveLib.strokes import StrokeRecorder, stroke_builder  # noqa: E402
from SlicerNNInteractiveLib.views import slice_to_ras  # noqa: E402

from .undo import TrameUndo  # noqa: E402

TOOLS = ("point", "bbox", "scribble", "lasso")
POSITIVE_COLOR, NEGATIVE_COLOR = (0.2, 0.8, 0.3), (0.9, 0.2, 0.2)  # the widget's
UNDO_STATES = 20  # as the desktop's Segment Editor widget


class TrameSegmentSelection:
    """trame-slicer keeps the selected segment in its SegmentationEditor (Python), not in the editor node."""

    def __init__(self, editor) -> None:
        self.editor = editor

    def get(self) -> str | None:
        return self.editor.active_segment_id or None

    def set(self, segment_id: str) -> None:
        self.editor.set_active_segment_id(segment_id)


class WebHost:
    """One scene's nnInteractive: tools, prompts and the Logic's events, for a trame-slicer ``SlicerApp``."""

    def __init__(self, slicer_app, choice: BackendChoice, show: Callable[[Event], None],
                 busy_changed: Callable[[bool], None] = lambda busy: None) -> None:
        self.app = slicer_app
        self.show = show
        self.busy_changed = busy_changed
        editor = slicer_app.segmentation_editor
        self.undo_stack = UndoStack(undo_limit=UNDO_STATES)
        editor.set_undo_stack(self.undo_stack)
        self.trame_undo = TrameUndo(self.undo_stack, lambda: editor.editor_node.GetSegmentationNode())
        hooks = UndoHooks(self.trame_undo.save_undo, self.trame_undo.undo, self.trame_undo.redo)
        self.logic = SlicerNNInteractiveLogic(choice=choice, poll_wait=ASYNC_POLL_WAIT)
        self.logic.use_scene(slicer_app.scene, editor.editor_node, slicer_app.app_logic, undo=hooks,
                             selection=TrameSegmentSelection(editor))
        self.positive = True
        self.tool: str | None = None
        self.markups = nodes.prompt_markups(slicer_app.scene)
        self.markups["point"].AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                                          lambda *_: self._point_placed())
        self.recorder = StrokeRecorder(self._stroke_finished)
        self.boxes = BoxPlacement(slicer_app.scene, self._box_finished,
                                  lambda: [slice_to_ras(n) for _i, n in self.slice_views()])
        self.place_mode = PlaceMode(slicer_app.app_logic)
        self._task: asyncio.Future | None = None
        self._update_sign_colors()

    # -- scene ------------------------------------------------------------------------------------
    @property
    def editor_node(self):
        return self.app.segmentation_editor.editor_node

    def slice_views(self) -> list[tuple]:
        """(interactor, slice node) of each slice view, as the stroke recorder takes them."""
        return [(view.interactor(), view.get_view_node()) for view in self.app.view_manager.get_slice_views()]

    def segment_volume(self, volume) -> None:
        """Segment ``volume`` from now on: a new segmentation with one empty segment, selected."""
        self.set_tool(None)
        self.logic.drop_queue()
        editor = self.app.segmentation_editor
        segmentation = editor.create_empty_segmentation_node()
        editor.set_active_segmentation(segmentation, volume)
        self.editor_node.SetAndObserveSegmentationNode(segmentation)
        self.editor_node.SetAndObserveSourceVolumeNode(volume)
        self.logic.new_segment()
        self.undo_stack.clear()
        if self.logic.image_chosen(volume):  # a backend is up: the image travels while the user looks
            self._ensure_polling()

    # -- tools ------------------------------------------------------------------------------------
    def set_tool(self, tool: str | None) -> None:
        """One tool at a time (or none); it stays active after each prompt, as in the module."""
        if tool is not None and tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self.tool = tool
        self.recorder.stop()
        if tool != "bbox":
            self.boxes.stop()
        if tool == "point":
            self.place_mode.start(self.markups["point"], persistent=True)
        elif tool == "bbox":
            self._start_box()
        else:
            self.place_mode.stop()
        if tool in ("scribble", "lasso"):
            self.recorder.start(self.markups[tool], self.slice_views())

    def set_positive(self, positive: bool) -> None:
        self.positive = positive
        self._update_sign_colors()

    def next_segment(self) -> str:
        self.markups["point"].RemoveAllControlPoints()
        return self.logic.new_segment()

    def reset_segment(self) -> None:
        self.logic.drop_queue()
        self.markups["point"].RemoveAllControlPoints()
        self.logic.reset_segment()

    def undo(self) -> None:
        self.enqueue(QueuedPrompt(UNDO))

    def redo(self) -> None:
        self.enqueue(QueuedPrompt(REDO))

    def enqueue(self, item: QueuedPrompt) -> None:
        self.logic.enqueue(item)
        self._ensure_polling()

    def close(self) -> None:
        self.set_tool(None)
        self.logic.close()

    # -- prompts from markups and strokes ------------------------------------------------------------
    def _point_placed(self) -> None:
        node = self.markups["point"]
        position, positive = control_points_world(node)[-1], self.positive
        node.SetNthControlPointLabel(node.GetNumberOfControlPoints() - 1, "+" if positive else "-")
        self.enqueue(QueuedPrompt(lambda g: point_prompt(position, g, positive)))

    def _start_box(self) -> None:
        if self.tool == "bbox":
            node = self.boxes.start()  # a fresh ROI: no stale corner
            self._update_sign_colors()
            self.place_mode.start(node, persistent=False)

    def _box_finished(self, frame: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        positive = self.positive
        self.enqueue(QueuedPrompt(lambda g: box_prompt(*frame, g, positive, False)))
        asyncio.get_running_loop().call_soon(self._start_box)  # not inside the ROI's own callback

    def _stroke_finished(self, points: np.ndarray, normal: np.ndarray) -> None:
        assert self.tool is not None
        build = stroke_builder(self.tool, points, normal, self.positive, self._scribble_thickness)
        self.enqueue(QueuedPrompt(build, self.markups[self.tool].RemoveAllControlPoints))

    def _scribble_thickness(self) -> tuple[int, int, int]:
        backend = self.logic.backend  # the prompt is prepared once a backend exists
        assert backend is not None
        return backend.capabilities().scribble_thickness

    def _update_sign_colors(self) -> None:
        color = POSITIVE_COLOR if self.positive else NEGATIVE_COLOR
        for markup in [*self.markups.values(), self.boxes.roi]:
            if markup is not None and markup.GetDisplayNode() is not None:
                markup.GetDisplayNode().SetSelectedColor(*color)
                markup.GetDisplayNode().SetColor(*color)

    # -- the Logic's poll, as an asyncio task ---------------------------------------------------------
    def _ensure_polling(self) -> None:
        if self._task is None or self._task.done():
            self.busy_changed(True)
            self._task = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        try:
            await poll_until_idle(self.logic, self.show)
        finally:
            self.busy_changed(False)

    @property
    def idle(self) -> bool:
        return not self.logic.busy and (self._task is None or self._task.done())
