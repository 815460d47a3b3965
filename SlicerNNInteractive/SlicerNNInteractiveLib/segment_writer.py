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

from .errors import PromptError
from .segments import grid_image, read_mask


@dataclass(frozen=True)
class WriteOutcome:
    """What a write did: whether anything changed and whether the segment now equals the result in the box."""

    changed: bool
    complete: bool


@dataclass(frozen=True)
class UndoHooks:
    """A host's Segment Editor undo history, for the module's writes and its Undo/Redo.

    The desktop host passes its embedded Segment Editor's ``saveStateForUndo``, ``undo`` and ``redo``, so
    that editor's Undo button reverts a prompt and the module's Undo reverts every segment a prompt
    changed; a web host passes its own undo stack's. ``save`` is called before each write, ``undo`` and
    ``redo`` must restore all segments to the neighbouring saved state (and change nothing when there is
    none: the module then writes the model's changed region itself).
    """

    save: Callable[[], object]
    undo: Callable[[], object]
    redo: Callable[[], object]


class WriteError(PromptError):
    """Writing a result failed; the message says whether the segments were restored."""


class SegmentWriter:
    """Writes result patches into segments with the masking, overwrite and undo of one segment editor node.

    ``undo`` (the host's hooks) keeps the history where the host's buttons can reach it; without hooks this
    writer's own logic keeps it, with room for ``undo_states`` states. Either way no state is kept that no
    button restores: with hooks the own logic keeps none, and adding a segment saves none.
    """

    def __init__(self, scene, editor_node, app_logic=None, undo: UndoHooks | None = None,
                 undo_states: int = 20) -> None:
        self.logic = self._editor_logic(scene, editor_node, app_logic, 0 if undo else undo_states)
        # AddEmptySegment saves an undo state in its logic's history, which no Undo reaches: a logic without one.
        self._adder = self._editor_logic(scene, editor_node, app_logic, 0)
        self.editor_node = editor_node
        self._own = undo is None
        self.hooks = undo or UndoHooks(self.logic.SaveStateForUndo, self.logic.Undo, self.logic.Redo)

    def forget_own_history(self) -> None:
        """Drop the states of this writer's own history (none is kept with a host's hooks)."""
        if self._own:
            self.logic.ClearUndoState()

    @staticmethod
    def _editor_logic(scene, editor_node, app_logic, undo_states: int):
        logic = slicer.vtkSlicerSegmentEditorLogic()
        logic.SetMRMLScene(scene)
        if app_logic is not None:
            logic.SetMRMLApplicationLogic(app_logic)
        logic.SetSegmentEditorNode(editor_node)
        logic.SetMaximumNumberOfUndoStates(undo_states)
        return logic

    def add_segment(self) -> str:
        """Add an empty segment (Slicer's default name, color and terminology) and select it; "" if none could be."""
        return self._adder.AddEmptySegment("", 0)

    def write(
        self, segmentation_node, segment_id: str, index_to_seg: np.ndarray, box, patch: np.ndarray
    ) -> WriteOutcome:
        """Make the segment equal ``patch`` inside ``box`` as far as the editor's masking allows.

        A write that fails halfway is undone (every segment back to the state saved before it); WriteError says
        whether that worked.
        """
        patch = patch.astype(bool)
        current = read_mask(segmentation_node, segment_id, index_to_seg, box).astype(bool)
        added, removed = patch & ~current, current & ~patch
        if not added.any() and not removed.any():
            return WriteOutcome(changed=False, complete=True)
        self.hooks.save()
        try:
            for voxels, mode in ((added, self.logic.ModificationModeAdd),
                                 (removed, self.logic.ModificationModeRemove)):
                if voxels.any():
                    modifier = grid_image(index_to_seg, box, voxels)
                    self.logic.ModifySegmentByLabelmap(segmentation_node, segment_id, modifier, mode, True, False)
        except Exception as exc:
            raise self._restore(segmentation_node, segment_id, index_to_seg, box, current, exc) from exc
        if self._unmasked():  # nothing can have kept voxels out: no need to read the box back
            return WriteOutcome(changed=True, complete=True)
        written = read_mask(segmentation_node, segment_id, index_to_seg, box).astype(bool)
        return WriteOutcome(changed=True, complete=bool(np.array_equal(written, patch)))

    def _unmasked(self) -> bool:
        """Neither the editable area nor the editable intensity range limits writes."""
        node = self.editor_node
        return (node.GetMaskMode() == slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere
                and not node.GetSourceVolumeIntensityMask())

    def _restore(self, segmentation_node, segment_id: str, index_to_seg, box, before: np.ndarray,
                 error: Exception) -> WriteError:
        """Undo a write that failed halfway; the error says what the segments are now."""
        why = f"{type(error).__name__}: {error}"
        try:
            self.hooks.undo()
            restored = np.array_equal(read_mask(segmentation_node, segment_id, index_to_seg, box).astype(bool),
                                      before)
        except Exception:
            restored = False
        if restored:
            return WriteError(f"The result could not be written ({why}); the segments were restored as they were.")
        return WriteError(f"The result was written only in part ({why}) and could not be taken back: use the "
                          "Segment Editor's Undo to restore the segments.")

    def clear(self, segmentation_node, segment_id: str) -> None:
        """Empty a segment (undoable); used by "Reset segment"."""
        self.hooks.save()
        slicer.vtkSlicerSegmentationsModuleLogic.ClearSegment(segmentation_node, segment_id)

    def undo(self) -> None:
        """The Segment Editor's Undo: every segment back to the last saved state."""
        self.hooks.undo()

    def redo(self) -> None:
        self.hooks.redo()
