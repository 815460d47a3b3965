"""One prompt, start to finish: read the scene, call the backend, write the segment.

The steps are split by thread so a GUI never blocks:

* :meth:`PromptSession.prepare` (main thread) reads MRML: which volume and segment, what the
  backend is missing (image / starting mask, decided by cheap stamps), and the voxel prompt.
* :meth:`PromptSession.run` (any thread, e.g. via ``backend.start``) only calls the backend.
* :meth:`PromptSession.apply` (main thread) writes the changed region into the segment, or
  :meth:`PromptSession.abandon` records a failure. Either way the segment is only touched once a
  whole result has arrived, and never when the user changed it meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from vtk.util import numpy_support

from nninteractive_slicer.interface import Backend, Prompt, PromptResult

from .apply import SegmentWriter
from .errors import PromptError
from .geometry import VolumeGeometry
from .segments import (
    ImageStamp,
    SegmentStamp,
    ensure_segmentation_grid,
    full_box,
    image_stamp,
    index_to_segmentation,
    read_mask,
    segment_stamp,
)

UNDO = "undo"
SYNC = "sync"  # no prompt: only bring the backend up to date


@dataclass(eq=False)
class PreparedPrompt:
    """Everything :meth:`PromptSession.run` needs, read from the scene on the main thread."""

    prompt: Prompt | str
    volume_node_id: str
    segmentation_node_id: str
    segment_id: str
    geometry: VolumeGeometry
    index_to_seg: np.ndarray
    image_stamp: ImageStamp
    segment_stamp: SegmentStamp
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
    ) -> None:
        self.scene = scene
        self.editor_node = editor_node
        self.writer = SegmentWriter(scene, editor_node, app_logic, save_undo)
        self._backend = backend
        self._sent_image: ImageStamp | None = None
        self._sent_segment: SegmentStamp | None = None

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
        selected = self.editor_node.GetSelectedSegmentID()
        if selected and segmentation.GetSegment(selected) is not None:
            return selected
        return self.new_segment() if create else None

    def new_segment(self) -> str:
        """Add an empty segment and select it ("Next segment"); the next prompt starts a new object."""
        self.segmentation_node()
        segment_id = self.writer.logic.AddEmptySegment("", 0)
        if not segment_id:
            raise PromptError("A new segment could not be added: select a source volume in the Segment Editor.")
        return segment_id

    def reset_segment(self) -> None:
        """Empty the selected segment (undoable); the backend restarts from empty with the next prompt."""
        segment_id = self.current_segment_id(create=False)
        if segment_id is not None:
            self.writer.clear(self.segmentation_node(), segment_id)

    # -- the three steps ------------------------------------------------------------------------
    def prepare(self, prompt_or_builder: Prompt | str | Callable[[VolumeGeometry], Prompt]) -> PreparedPrompt:
        """Main thread: resolve nodes, decide what to sync, build the voxel prompt. Raises PromptError.

        Pass a finished Prompt, :data:`UNDO`, or a function geometry -> Prompt (markups conversion).
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
        if _is_undo(prompt) and prepared.send_mask:
            raise PromptError(
                "The segment or image changed since the last prompt, so the model cannot undo it: "
                "use the Segment Editor's Undo (Ctrl+Z) instead."
            )
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
        if _is_undo(prepared.prompt):
            return backend.undo()
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
        if not result.changed:
            return Outcome(False, "The prompt changed nothing.", prepared.segment_id)
        outcome = self.writer.write(segmentation, prepared.segment_id, prepared.index_to_seg, result.box, result.patch)
        if outcome.complete:
            if same_backend:
                self._sent_segment = segment_stamp(segmentation, prepared.segment_id, prepared.index_to_seg)
            return Outcome(outcome.changed, "Done.", prepared.segment_id)
        # Masking kept some voxels from being written: the backend's mask and the segment differ now,
        # so the segment is sent again as the starting mask with the next prompt.
        self._sent_segment = None
        return Outcome(
            True, "Done; the Segment Editor's masking settings kept part of the result out.", prepared.segment_id
        )

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


def _is_undo(prompt: object) -> bool:
    return isinstance(prompt, str) and prompt == UNDO


def _image_copy(volume_node) -> np.ndarray:
    """A (k, j, i) copy of the voxels: the worker thread must not read VTK memory the scene may free."""
    image = volume_node.GetImageData()
    i, j, k = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i).copy()
