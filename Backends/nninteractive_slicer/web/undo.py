"""One undo history for the page: the Lib's undo hooks push onto trame-slicer's undo stack.

trame-slicer's segment editor keeps a Python :class:`undo_stack.UndoStack` of whole-segmentation states; the
desktop keeps the Segment Editor widget's. The Lib asks its host for three hooks (save a state before a
write, undo, redo), so the module's Undo (model and segments together) and the page's history stay one
history, exactly as the desktop's module Undo and Segment Editor Undo do.
"""

from __future__ import annotations

from collections.abc import Callable

import slicer
from undo_stack import UndoCommand, UndoStack


def _copy(segmentation) -> slicer.vtkSegmentation:
    state = slicer.vtkSegmentation()
    state.DeepCopy(segmentation)
    return state


class SegmentationStateCommand(UndoCommand):
    """The segmentation before a write; the state after it is taken when it is first undone.

    Taking it then is exact: the stack undoes later commands first, so the segmentation is the one this
    write left (and the write itself is still running when the command is pushed).
    """

    def __init__(self, segmentation_node, changed: Callable[[], None]) -> None:
        super().__init__()
        self._node = segmentation_node
        self._changed = changed
        self._before = _copy(segmentation_node.GetSegmentation())
        self._after: slicer.vtkSegmentation | None = None

    def undo(self) -> None:
        if self._after is None:
            self._after = _copy(self._node.GetSegmentation())
        self._restore(self._before)

    def redo(self) -> None:
        if self._after is not None:
            self._restore(self._after)

    def _restore(self, state) -> None:
        self._node.GetSegmentation().DeepCopy(state)
        self._node.Modified()
        self._changed()


class TrameUndo:
    """The Lib's undo hooks (save a state, undo, redo) on one trame-slicer undo stack."""

    def __init__(self, stack: UndoStack, segmentation_node: Callable[[], object],
                 changed: Callable[[], None] = lambda: None) -> None:
        self.stack = stack
        self._segmentation_node = segmentation_node
        self._changed = changed

    def save_undo(self) -> None:
        node = self._segmentation_node()
        if node is not None:
            self.stack.push(SegmentationStateCommand(node, self._changed))

    def undo(self) -> None:
        self.stack.undo()

    def redo(self) -> None:
        self.stack.redo()
