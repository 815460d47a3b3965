"""One prompt, start to finish: read the scene, call the backend, write the segment.

The steps are split by thread so a GUI never blocks:

* :meth:`PromptSession.prepare` (main thread) reads MRML: which volume and segment, what the
  backend is missing (image / starting mask, decided by cheap stamps), and the voxel prompt.
* :meth:`PromptSession.run` (any thread, e.g. via ``backend.start``) only calls the backend.
* :meth:`PromptSession.apply` (main thread) writes the changed region into the segment, or
  :meth:`PromptSession.abandon` records a failure. Either way the segment is only touched once a
  whole result has arrived, and never when the user changed it meanwhile.

Undo and redo (:data:`UNDO`, :data:`REDO`) move the model and the Segment Editor together: the model
restores its state, and the Segment Editor's own Undo/Redo restores every segment the prompt changed
(an overwrite mode may have taken voxels from other segments). They reach the prompts made since the
segment was last sent to the model; any other edit (the Segment Editor's own Undo included) is sent
to the model as the new starting mask with the next prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np
from vtk.util import numpy_support

from nninteractive_slicer.interface import Backend, Prompt, PromptResult

from .errors import PromptError
from .geometry import VolumeGeometry
from .segment_writer import SegmentWriter
from .segments import (
    ImageStamp,
    SegmentStamp,
    ensure_segmentation_grid,
    full_box,
    image_stamp,
    index_to_segmentation,
    read_mask,
    segment_stamp,
    segmentation_stamp,
)
from .selection import EditorNodeSelection, SegmentSelection


class Action(str, Enum):
    """A queued call that is not a prompt (a str, as the Lib's other calls, e.g. a redo, are)."""

    UNDO = "undo"  # revert the last prompt
    REDO = "redo"  # step forward again through an undone prompt
    SYNC = "sync"  # no prompt: only bring the backend up to date

    def __str__(self) -> str:  # "undo" in messages, not "Action.UNDO"
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


UNDO, REDO, SYNC = Action.UNDO, Action.REDO, Action.SYNC


@dataclass(frozen=True)
class _Step:
    """A prompt (or its undo) as the segments saw it, so that undo and redo can use the Segment Editor's history.

    ``editor`` says the Segment Editor's Undo (for a prompt) or Redo (for an undone one) brings the segments to
    the other side of this step; it does only while ``segments`` (the segmentation as this step left it) holds.
    """

    editor: bool
    segments: tuple


@dataclass(eq=False)
class PreparedPrompt:
    """Everything :meth:`PromptSession.run` needs, read from the scene on the main thread."""

    prompt: Prompt | Action
    volume_node_id: str
    segmentation_node_id: str
    segment_id: str
    geometry: VolumeGeometry
    index_to_seg: np.ndarray
    image_stamp: ImageStamp
    segment_stamp: SegmentStamp | None
    image: np.ndarray | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    send_mask: bool = False
    mask: np.ndarray | None = None
    backend: Backend | None = None  # the backend this prompt was prepared for
    # Set by run() as each step succeeds, read back on the main thread.
    image_sent: bool = False
    mask_sent: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    history: Any = None  # what a recording session carries from prepare to apply (see recording.py)


@dataclass(frozen=True)
class Outcome:
    """What :meth:`PromptSession.apply` did, in words for the status line."""

    written: bool
    message: str
    segment_id: str


class PromptSession:
    """Drives one backend for one scene and one Segment Editor node (its volume, segmentation, selected segment)."""

    def __init__(
        self,
        scene,
        backend: Backend | None,
        editor_node,
        app_logic=None,
        save_undo: Callable[[], object] | None = None,
        undo: Callable[[], object] | None = None,
        redo: Callable[[], object] | None = None,
        selection: SegmentSelection | None = None,
    ) -> None:
        self.scene = scene
        self.editor_node = editor_node
        self.selection = selection or EditorNodeSelection(editor_node)  # the host keeps the selected segment
        self.writer = SegmentWriter(scene, editor_node, app_logic, save_undo, undo, redo)
        self._backend = backend
        self._sent_image: ImageStamp | None = None
        self._sent_segment: SegmentStamp | None = None
        self._done: list[_Step] = []  # prompts since the segment was last sent, oldest first
        self._undone: list[_Step] = []  # undone prompts, most recently undone last

    # -- backend -------------------------------------------------------------------------------
    @property
    def backend(self) -> Backend | None:
        return self._backend

    @backend.setter
    def backend(self, backend: Backend | None) -> None:
        """Switch backends (e.g. after a configuration change); the new one gets everything again."""
        self._backend = backend
        self.forget_backend_state()

    def forget_backend_state(self) -> None:
        """Send image and segment again with the next prompt (e.g. after the backend lost its session)."""
        self._sent_image = None
        self._sent_segment = None
        self._done, self._undone = [], []

    @property
    def can_undo(self) -> bool:
        """Whether the module's Undo has a prompt to undo (the model may keep fewer; it says so then)."""
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    # -- scene ----------------------------------------------------------------------------------
    def volume_node(self):
        node = self.editor_node.GetSourceVolumeNode()
        if node is None:
            raise PromptError("Select a source volume in the Segment Editor below, then place the prompt again.")
        if node.GetImageData() is None or node.GetImageData().GetNumberOfScalarComponents() != 1:
            raise PromptError(f"The volume '{node.GetName()}' has no single-channel image: choose a scalar volume.")
        return node

    def segmentation_node(self):
        node = self.editor_node.GetSegmentationNode()
        if node is None:
            node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
            node.CreateDefaultDisplayNodes()
            node.SetReferenceImageGeometryParameterFromVolumeNode(self.volume_node())
            self.editor_node.SetAndObserveSegmentationNode(node)
        return node

    def current_segment_id(self, create: bool = True) -> str | None:
        """The Segment Editor's selected segment; a new one is added (and selected) when none is."""
        segmentation = self.segmentation_node().GetSegmentation()
        selected = self.selection.get()
        if selected and segmentation.GetSegment(selected) is not None:
            return selected
        return self.new_segment() if create else None

    def new_segment(self) -> str:
        """Add an empty segment and select it ("Next segment"); the next prompt starts a new object."""
        self.segmentation_node()
        segment_id = self.writer.logic.AddEmptySegment("", 0)
        if not segment_id:
            raise PromptError("A new segment could not be added: select a source volume in the Segment Editor.")
        self.selection.set(segment_id)
        return segment_id

    def reset_segment(self) -> None:
        """Empty the selected segment (undoable); the backend restarts from empty with the next prompt."""
        segment_id = self.current_segment_id(create=False)
        if segment_id is not None:
            self.writer.clear(self.segmentation_node(), segment_id)

    # -- the three steps ------------------------------------------------------------------------
    def prepare(self, prompt_or_builder: Prompt | Action | Callable[[VolumeGeometry], Prompt]) -> PreparedPrompt:
        """Main thread: resolve nodes, decide what to sync, build the voxel prompt. Raises PromptError.

        Pass a finished Prompt, :data:`UNDO`, :data:`REDO`, or a function geometry -> Prompt (markups conversion).
        """
        volume = self.volume_node()
        geometry = VolumeGeometry.from_volume_node(volume)
        prompt = prompt_or_builder(geometry) if callable(prompt_or_builder) else prompt_or_builder
        segmentation = self.segmentation_node()  # created only once the prompt is known to be valid
        index_to_seg = index_to_segmentation(geometry, segmentation)
        ensure_segmentation_grid(segmentation, volume, index_to_seg)
        segment_id = self.current_segment_id()
        assert segment_id is not None
        stamp_image = image_stamp(volume)
        stamp_segment = segment_stamp(segmentation, segment_id, index_to_seg)
        prepared = PreparedPrompt(
            prompt, volume.GetID(), segmentation.GetID(), segment_id, geometry, index_to_seg, stamp_image, stamp_segment
        )
        prepared.backend = self._backend
        send_image = stamp_image != self._sent_image
        prepared.send_mask = send_image or stamp_segment != self._sent_segment
        if prompt in (UNDO, REDO):
            if prepared.send_mask:
                raise PromptError(
                    f"The segment or image changed since the last prompt, so the model cannot {prompt} it: "
                    f"use the Segment Editor's {prompt.capitalize()} instead."
                )
            if not (self._done if prompt == UNDO else self._undone):
                raise PromptError(f"There is no prompt to {prompt} in this segment.")
        if send_image:
            prepared.image = _image_copy(volume)
            prepared.spacing = tuple(float(s) for s in reversed(volume.GetSpacing()))  # type: ignore[assignment]
        if prepared.send_mask:
            mask = read_mask(segmentation, segment_id, index_to_seg, full_box(geometry.shape))
            prepared.mask = mask if mask.any() else None
        return prepared

    def run(self, prepared: PreparedPrompt) -> PromptResult:
        """Any thread: bring the backend up to date, then run the prompt. Touches no MRML."""
        backend = prepared.backend
        if backend is None:
            raise PromptError("No backend is ready: choose one in the Configuration tab.")
        if prepared.image is not None:
            backend.set_image(prepared.image, prepared.spacing)
            prepared.image_sent = True
        if prepared.send_mask:
            # A fresh image starts with an empty mask, so an empty segment needs no call.
            if prepared.mask is not None or not prepared.image_sent:
                backend.set_initial_mask(prepared.mask)
            prepared.mask_sent = True
        if prepared.prompt == SYNC:
            return PromptResult()
        if prepared.prompt == UNDO:
            return backend.undo()
        if prepared.prompt == REDO:
            return backend.redo()
        return backend.prompt(prepared.prompt)  # type: ignore[arg-type]

    def apply(self, prepared: PreparedPrompt, result: PromptResult) -> Outcome:
        """Main thread: write the changed region, unless the user changed image or segment meanwhile."""
        self._record_sync(prepared)
        segmentation = self.scene.GetNodeByID(prepared.segmentation_node_id)
        if not self.is_current(prepared):
            # The backend now holds a result for a segment that no longer exists as it was: re-send next time.
            return Outcome(
                False,
                "The image or segment changed while the model was working; place the prompt again.",
                prepared.segment_id,
            )
        same_backend = prepared.backend is self._backend
        if same_backend:
            self._sent_segment = prepared.segment_stamp
        if prepared.prompt == SYNC:
            return Outcome(False, "The image is ready for prompts.", prepared.segment_id)
        if prepared.prompt in (UNDO, REDO):
            return self._apply_move(prepared, result, segmentation)
        self._undone = []
        if not result.changed:
            self._done.append(_Step(False, segmentation_stamp(segmentation, prepared.index_to_seg)))
            return Outcome(False, "The prompt changed nothing.", prepared.segment_id)
        assert result.box is not None and result.patch is not None
        outcome = self.writer.write(segmentation, prepared.segment_id, prepared.index_to_seg, result.box, result.patch)
        if outcome.complete:
            if same_backend:
                self._sent_segment = segment_stamp(segmentation, prepared.segment_id, prepared.index_to_seg)
                self._done.append(_Step(outcome.changed, segmentation_stamp(segmentation, prepared.index_to_seg)))
            return Outcome(outcome.changed, "Done.", prepared.segment_id)
        # Masking kept some voxels from being written: the backend's mask and the segment differ now,
        # so the segment is sent again as the starting mask with the next prompt.
        self._sent_segment = None
        return Outcome(
            True, "Done; the Segment Editor's masking settings kept part of the result out.", prepared.segment_id
        )

    def _apply_move(self, prepared: PreparedPrompt, result: PromptResult, segmentation) -> Outcome:
        """An undo or redo the model did: the Segment Editor's own Undo/Redo restores all segments when nothing
        else was edited since; otherwise the model's changed region is written into this segment."""
        undo = prepared.prompt == UNDO
        step = (self._done if undo else self._undone).pop()
        index_to_seg = prepared.index_to_seg
        done = "Undone" if undo else "Redone"
        editor = step.editor and segmentation_stamp(segmentation, index_to_seg) == step.segments
        if editor:
            self.writer.undo() if undo else self.writer.redo()
        box, patch = result.box, result.patch  # both None when nothing changed
        written = editor or (box is not None and patch is not None and self.writer.write(
            segmentation, prepared.segment_id, index_to_seg, box, patch).changed)
        in_step = box is None or patch is None or np.array_equal(
            read_mask(segmentation, prepared.segment_id, index_to_seg, box), patch)
        if not in_step:  # the segment does not show the model's mask: send it again with the next prompt
            self._sent_segment = None
            self._done, self._undone = [], []
            return Outcome(written, f"{done} in the model; the segment differs and is sent again with the next "
                                    "prompt.", prepared.segment_id)
        self._sent_segment = segment_stamp(segmentation, prepared.segment_id, index_to_seg)
        (self._undone if undo else self._done).append(step)
        now = segmentation_stamp(segmentation, index_to_seg)  # the editor's undo swaps in other labelmap objects
        for steps in (self._done, self._undone):
            if editor and steps:
                steps[-1] = replace(steps[-1], segments=now)
            elif not editor:  # our write is the editor's newest state now: its history no longer matches ours
                steps[:] = [replace(s, editor=False) for s in steps]
        return Outcome(written, f"{done}.", prepared.segment_id)

    def is_current(self, prepared: PreparedPrompt) -> bool:
        """Are the image and segment still as they were when ``prepared`` was read (nobody changed them since)?"""
        segmentation = self.scene.GetNodeByID(prepared.segmentation_node_id)
        volume = self.scene.GetNodeByID(prepared.volume_node_id)
        current_segment = (
            segment_stamp(segmentation, prepared.segment_id, prepared.index_to_seg) if segmentation else None
        )
        return volume is not None and image_stamp(volume) == prepared.image_stamp and (
            current_segment == prepared.segment_stamp
        )

    def abandon(self, prepared: PreparedPrompt) -> None:
        """Main thread, after run() raised: remember what did reach the backend; the segments stay untouched."""
        self._record_sync(prepared)

    def sync(self) -> None:
        """Send the image and segment now if the backend lacks them, so the next prompt does not wait for the upload."""
        prepared = self.prepare(SYNC)
        try:
            self.run(prepared)
        finally:
            self.abandon(prepared)

    def submit(self, prompt_or_builder: Any) -> Outcome:
        """prepare + run + apply on the calling thread (scripts, tests, benchmarks)."""
        prepared = self.prepare(prompt_or_builder)
        try:
            result = self.run(prepared)
        except BaseException:
            self.abandon(prepared)
            raise
        return self.apply(prepared, result)

    def _record_sync(self, prepared: PreparedPrompt) -> None:
        if prepared.backend is not self._backend:
            return  # the backend was switched meanwhile: the new one has been sent nothing
        if prepared.image_sent:
            self._sent_image = prepared.image_stamp
            self._sent_segment = None
        if prepared.mask_sent:
            self._sent_segment = prepared.segment_stamp
        if prepared.image_sent or prepared.mask_sent:  # a new starting point: earlier prompts are out of reach
            self._done, self._undone = [], []


def _image_copy(volume_node) -> np.ndarray:
    """A (k, j, i) copy of the voxels: the worker thread must not read VTK memory the scene may free."""
    image = volume_node.GetImageData()
    i, j, k = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i).copy()
