"""Write a backend's changed region into a segment through Slicer's own Segment Editor logic.

``vtkSlicerSegmentEditorLogic.ModifySegmentByLabelmap`` applies the editor node's editable area,
editable intensity range and overwrite mode exactly as the Segment Editor's effects do. Its
"set" mode replaces the whole segment even with an extent, so a result is written as two edits
limited to the box: Add for the voxels the result adds and Remove for those it removes. Voxels
the result leaves unchanged are not touched, so they are never taken from other segments again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import slicer

from .segments import grid_image, read_mask


@dataclass(frozen=True)
class WriteOutcome:
    """What a write did: whether anything changed and whether the segment now equals the result in the box."""

    changed: bool
    complete: bool


class SegmentWriter:
    """Writes result patches into segments with the masking, overwrite and undo of one segment editor node.

    ``save_undo``, ``undo`` and ``redo`` let the widget use the embedded Segment Editor's own undo history
    (its ``saveStateForUndo``, ``undo`` and ``redo``), so the editor's Undo button reverts a prompt and the
    module's Undo reverts every segment a prompt changed; by default this writer's own logic keeps the
    history, with room for ``undo_states`` states.
    """

    def __init__(self, scene, editor_node, app_logic=None, save_undo: Callable[[], object] | None = None,
                 undo: Callable[[], object] | None = None, redo: Callable[[], object] | None = None,
                 undo_states: int = 20) -> None:
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(scene)
        if app_logic is not None:
            self.logic.SetMRMLApplicationLogic(app_logic)
        self.logic.SetSegmentEditorNode(editor_node)
        self.logic.SetMaximumNumberOfUndoStates(undo_states)
        self.editor_node = editor_node
        self._save_undo = save_undo or self.logic.SaveStateForUndo
        self._undo = undo or self.logic.Undo
        self._redo = redo or self.logic.Redo

    def write(
        self, segmentation_node, segment_id: str, index_to_seg: np.ndarray, box, patch: np.ndarray
    ) -> WriteOutcome:
        """Make the segment equal ``patch`` inside ``box`` as far as the editor's masking allows."""
        patch = patch.astype(bool)
        current = read_mask(segmentation_node, segment_id, index_to_seg, box).astype(bool)
        added, removed = patch & ~current, current & ~patch
        if not added.any() and not removed.any():
            return WriteOutcome(changed=False, complete=True)
        self._save_undo()
        for voxels, mode in ((added, self.logic.ModificationModeAdd), (removed, self.logic.ModificationModeRemove)):
            if voxels.any():
                modifier = grid_image(index_to_seg, box, voxels)
                self.logic.ModifySegmentByLabelmap(segmentation_node, segment_id, modifier, mode, True, False)
        written = read_mask(segmentation_node, segment_id, index_to_seg, box).astype(bool)
        return WriteOutcome(changed=True, complete=bool(np.array_equal(written, patch)))

    def clear(self, segmentation_node, segment_id: str) -> None:
        """Empty a segment (undoable); used by "Reset segment"."""
        self._save_undo()
        slicer.vtkSlicerSegmentationsModuleLogic.ClearSegment(segmentation_node, segment_id)

    def undo(self) -> None:
        """The Segment Editor's Undo: every segment back to the last saved state."""
        self._undo()

    def redo(self) -> None:
        self._redo()
