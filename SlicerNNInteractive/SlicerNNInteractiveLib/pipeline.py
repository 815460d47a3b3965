"""The prompt pipeline: read the scene, bring the backend up to date, run the prompt, write the segment.

The steps are split by thread so a GUI never blocks:

* :meth:`PromptPipeline.prepare` (main thread) reads MRML into an immutable :class:`Request`: which
  volume and segment, what the backend is missing (image / starting mask, decided by cheap stamps),
  and the voxel prompt.
* :meth:`PromptPipeline.run` (worker thread) brings the backend up to date and runs the prompt. It
  touches no MRML; what it must tell the main thread goes through the request's :class:`Progress`
  (a locked value) and the returned :class:`PromptResult`, never through a shared object.
* :meth:`PromptPipeline.apply` (main thread) writes the changed region into the segment, or
  :meth:`PromptPipeline.abandon` takes note of a failure. Either way the segment is only touched once
  a whole result has arrived, and never when the user changed it meanwhile.

Extension points (:class:`CatchUp`, :class:`AfterStep`): how the backend is brought up to date
(by default the image and the segment as its starting mask; segment histories may instead resume a
saved history), and what happens after a step reached a segment (segment histories record it on the
worker thread and write it into the scene on the main thread). They plug in; nothing subclasses.

Undo and redo (:data:`UNDO`, :data:`REDO`) move the model and the segments together: the model
restores its state, and the Segment Editor's Undo/Redo (the :class:`UndoHooks`) restores every segment
the prompt changed (an overwrite mode may have taken voxels from other segments) while its history
still holds that state; past it (it keeps fewer states than the model), the model's changed region
is written into the segment. They reach the prompts made since the segment was last sent to the
model; any other edit is sent to the model as the new starting mask with the next prompt.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Protocol

import numpy as np
from vtk.util import numpy_support

from nninteractive_slicer.interface import Backend, Prompt, PromptResult

from .errors import PromptError
from .geometry import VolumeGeometry
from .segment_writer import SegmentWriter, UndoHooks
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

__all__ = ["REDO", "SYNC", "UNDO", "Action", "AfterStep", "CatchUp", "Handed", "Outcome", "Progress",
           "PromptPipeline", "Request", "SendImageAndMask", "UndoHooks"]


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
class Handed:
    """What the worker thread hands to the main thread for one request (a copy, read under the lock)."""

    image_sent: bool = False
    mask_sent: bool = False
    replayed: tuple[int, int] = (0, 0)  # history steps replayed / to replay, for a progress bar
    records: tuple[Any, ...] = ()  # what each AfterStep's worker half gave, for its main-thread half


class Progress:
    """The one value the worker writes and the main thread reads while (and after) a request runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handed = Handed()

    def update(self, **changes: Any) -> None:
        with self._lock:
            self._handed = replace(self._handed, **changes)

    def add_record(self, record: Any) -> None:
        with self._lock:
            self._handed = replace(self._handed, records=(*self._handed.records, record))

    def read(self) -> Handed:
        with self._lock:
            return self._handed


@dataclass(frozen=True, eq=False)
class Request:
    """Everything :meth:`PromptPipeline.run` needs, read from the scene on the main thread; never changed after."""

    prompt: Any  # a Prompt, an Action, or what an extension understands (e.g. a history to replay)
    volume_node_id: str
    segmentation_node_id: str
    segment_id: str
    segment_name: str
    geometry: VolumeGeometry
    index_to_seg: np.ndarray
    image_stamp: ImageStamp
    segment_stamp: SegmentStamp | None
    backend: Backend | None  # the backend this request was prepared for
    image: np.ndarray | None = None  # set when the backend lacks the image
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    send_mask: bool = False
    mask: np.ndarray | None = None  # the segment as the starting mask (None: empty)
    plans: tuple[tuple[AfterStep, Any], ...] = ()  # each AfterStep with what its main-thread half planned
    progress: Progress = field(default_factory=Progress)

    def start_mask(self) -> np.ndarray:
        return self.mask if self.mask is not None else np.zeros(self.geometry.shape, np.uint8)


@dataclass(frozen=True)
class Outcome:
    """What :meth:`PromptPipeline.apply` did, in words for the status line."""

    written: bool
    message: str
    segment_id: str


class CatchUp(Protocol):
    """How the backend is brought up to date before a request's call (worker thread)."""

    def needs_mask(self, request: Request) -> bool:
        """Main thread: whether the worker needs the segment as it is even when the backend has it."""

    def catch_up(self, request: Request, backend: Backend) -> PromptResult | None:
        """Send what the backend lacks, marking it in ``request.progress``; a result ends the request there."""


class AfterStep(Protocol):
    """What happens after a step (main thread: ``plan`` and ``finish``; worker thread: ``record``)."""

    def plan(self, request: Request) -> Any:
        """Main thread, before the worker runs: what ``record`` needs from the scene (immutable)."""

    def record(self, request: Request, plan: Any, result: PromptResult | None) -> Any:
        """Worker thread, after the backend call (``result`` None when it failed): the heavy work."""

    def finish(self, request: Request, record: Any, current: bool) -> str:
        """Main thread: put ``record`` into the scene; returns a notice for the status line (or "")."""


class SendImageAndMask:
    """The default catch-up: the image, then the segment as the starting mask, each when the backend lacks it."""

    def needs_mask(self, request: Request) -> bool:
        return False

    def catch_up(self, request: Request, backend: Backend) -> PromptResult | None:
        image_sent = False
        if request.image is not None:
            backend.set_image(request.image, request.spacing)
            image_sent = True
            request.progress.update(image_sent=True)
        if request.send_mask:
            # A fresh image starts with an empty mask, so an empty segment needs no call.
            if request.mask is not None or not image_sent:
                backend.set_initial_mask(request.mask)
            request.progress.update(mask_sent=True)
        return None


@dataclass(frozen=True)
class _Step:
    """A prompt (or its undo) as the segments saw it, so that undo and redo can use the Segment Editor's history.

    ``editor`` says the Segment Editor's Undo (for a prompt) or Redo (for an undone one) brings the segments to
    the other side of this step; it does only while ``segments`` (the segmentation as this step left it) holds.
    """

    editor: bool
    segments: tuple


class PromptPipeline:
    """Drives one backend for one scene and one Segment Editor node (its volume, segmentation, selected segment)."""

    def __init__(self, scene, backend: Backend | None, editor_node, app_logic=None, undo: UndoHooks | None = None,
                 catch_up: CatchUp | None = None, after_step: Sequence[AfterStep] = (),
                 selection: SegmentSelection | None = None) -> None:
        self.scene = scene
        self.editor_node = editor_node
        self.selection = selection or EditorNodeSelection(editor_node)  # the host keeps the selected segment
        self.writer = SegmentWriter(scene, editor_node, app_logic, undo)
        self.catch_up = catch_up or SendImageAndMask()
        self.after_step = tuple(after_step)
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
        self._drop_steps()

    def _drop_steps(self) -> None:
        """The model starts a new object: earlier prompts are out of the module's Undo's reach, and so are the
        states its own history kept for them (a host's history stays: its buttons reach it)."""
        self._done, self._undone = [], []
        self.writer.forget_own_history()

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
        """The host's selected segment; a new one is added (and selected) when none is."""
        segmentation = self.segmentation_node().GetSegmentation()
        selected = self.selection.get()
        if selected and segmentation.GetSegment(selected) is not None:
            return selected
        return self.new_segment() if create else None

    def new_segment(self) -> str:
        """Add an empty segment and select it ("Next segment"); the next prompt starts a new object."""
        self.segmentation_node()
        segment_id = self.writer.add_segment()
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
    def prepare(self, prompt_or_builder: Any) -> Request:
        """Main thread: resolve nodes, decide what to sync, build the voxel prompt. Raises PromptError.

        Pass a finished Prompt, :data:`UNDO`, :data:`REDO`, :data:`SYNC`, what an extension understands, or a
        function geometry -> Prompt (markups conversion).
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
        send_image = stamp_image != self._sent_image
        send_mask = send_image or stamp_segment != self._sent_segment
        if prompt in (UNDO, REDO):
            if send_mask:
                raise PromptError(
                    f"The segment or image changed since the last prompt, so the model cannot {prompt} it: "
                    f"use the Segment Editor's {prompt.capitalize()} instead."
                )
            if not (self._done if prompt == UNDO else self._undone):
                raise PromptError(f"There is no prompt to {prompt} in this segment.")
        request = Request(
            prompt, volume.GetID(), segmentation.GetID(), segment_id,
            segmentation.GetSegmentation().GetSegment(segment_id).GetName(), geometry, index_to_seg, stamp_image,
            stamp_segment, self._backend, send_mask=send_mask,
        )
        if send_image:
            spacing = tuple(float(s) for s in reversed(volume.GetSpacing()))
            request = replace(request, image=_image_copy(volume), spacing=spacing)  # type: ignore[arg-type]
        if send_mask or self.catch_up.needs_mask(request):
            request = replace(request, send_mask=True, mask=self._segment_mask(segmentation, request))
        return replace(request, plans=tuple((step, step.plan(request)) for step in self.after_step))

    def run(self, request: Request) -> PromptResult:
        """Worker thread: bring the backend up to date, then run the prompt. Touches no MRML."""
        backend = request.backend
        if backend is None:
            raise PromptError("No backend is ready: choose one in the Configuration tab.")
        try:
            result = self.catch_up.catch_up(request, backend)
            if result is None:
                result = self._call(request, backend)
        except BaseException:
            self._record(request, None)
            raise
        self._record(request, result)
        return result

    @staticmethod
    def _call(request: Request, backend: Backend) -> PromptResult:
        if request.prompt == SYNC:
            return PromptResult()
        if request.prompt == UNDO:
            return backend.undo()
        if request.prompt == REDO:
            return backend.redo()
        if not isinstance(request.prompt, Prompt):
            raise PromptError(f"Nothing here can run {type(request.prompt).__name__}.")
        return backend.prompt(request.prompt)

    def _record(self, request: Request, result: PromptResult | None) -> None:
        for step, plan in request.plans:
            request.progress.add_record(step.record(request, plan, result))

    def apply(self, request: Request, result: PromptResult) -> Outcome:
        """Main thread: write the changed region, unless the user changed image or segment meanwhile."""
        handed = request.progress.read()
        self._note_sent(request, handed)
        current = self.is_current(request)
        outcome = self._write(request, result, current)
        steps = (step for step, _ in request.plans)
        notices = [step.finish(request, record, current) for step, record in zip(steps, handed.records)]
        notice = " ".join(n for n in notices if n)
        return replace(outcome, message=f"{outcome.message} {notice}") if notice else outcome

    def _write(self, request: Request, result: PromptResult, current: bool) -> Outcome:
        segmentation = self.scene.GetNodeByID(request.segmentation_node_id)
        if not current:
            # The backend now holds a result for a segment that no longer exists as it was: re-send next time.
            return Outcome(
                False, "The image or segment changed while the model was working; place the prompt again.",
                request.segment_id,
            )
        same_backend = request.backend is self._backend
        if same_backend:
            self._sent_segment = request.segment_stamp
        if request.prompt == SYNC:
            return Outcome(False, "The image is ready for prompts.", request.segment_id)
        if request.prompt in (UNDO, REDO):
            return self._apply_move(request, result, segmentation)
        self._undone = []
        if not result.changed:
            self._done.append(_Step(False, segmentation_stamp(segmentation, request.index_to_seg)))
            return Outcome(False, "The prompt changed nothing.", request.segment_id)
        assert result.box is not None and result.patch is not None
        outcome = self.writer.write(segmentation, request.segment_id, request.index_to_seg, result.box, result.patch)
        if outcome.complete:
            if same_backend:
                self._sent_segment = segment_stamp(segmentation, request.segment_id, request.index_to_seg)
                self._done.append(_Step(outcome.changed, segmentation_stamp(segmentation, request.index_to_seg)))
            return Outcome(outcome.changed, "Done.", request.segment_id)
        # Masking kept some voxels from being written: the backend's mask and the segment differ now,
        # so the segment is sent again as the starting mask with the next prompt.
        self._sent_segment = None
        return Outcome(
            True, "Done; the Segment Editor's masking settings kept part of the result out.", request.segment_id
        )

    def _apply_move(self, request: Request, result: PromptResult, segmentation) -> Outcome:
        """An undo or redo the model did: the Segment Editor's own Undo/Redo restores all segments when nothing
        else was edited since and its history still holds the state; otherwise the model's changed region is
        written into this segment."""
        undo = request.prompt == UNDO
        step = (self._done if undo else self._undone).pop()
        index_to_seg = request.index_to_seg
        done = "Undone" if undo else "Redone"
        before = segmentation_stamp(segmentation, index_to_seg)
        editor = step.editor and before == step.segments
        if editor:
            self.writer.undo() if undo else self.writer.redo()
            # The editor keeps fewer states than the model: past its oldest, its Undo changes nothing.
            editor = segmentation_stamp(segmentation, index_to_seg) != before
        box, patch = result.box, result.patch  # both None when nothing changed
        written = editor or (box is not None and patch is not None and self.writer.write(
            segmentation, request.segment_id, index_to_seg, box, patch).changed)
        in_step = box is None or patch is None or np.array_equal(
            read_mask(segmentation, request.segment_id, index_to_seg, box), patch)
        if not in_step:  # the segment does not show the model's mask: send it again with the next prompt
            self._sent_segment = None
            self._drop_steps()
            return Outcome(written, f"{done} in the model; the segment differs and is sent again with the next "
                                    "prompt.", request.segment_id)
        self._sent_segment = segment_stamp(segmentation, request.segment_id, index_to_seg)
        (self._undone if undo else self._done).append(step)
        now = segmentation_stamp(segmentation, index_to_seg)  # the editor's undo swaps in other labelmap objects
        for steps in (self._done, self._undone):
            if editor and steps:
                steps[-1] = replace(steps[-1], segments=now)
            elif not editor:  # our write is the editor's newest state now: its history no longer matches ours
                steps[:] = [replace(s, editor=False) for s in steps]
        return Outcome(written, f"{done}.", request.segment_id)

    def is_current(self, request: Request) -> bool:
        """Are the image and segment still as they were when ``request`` was read (nobody changed them since)?"""
        segmentation = self.scene.GetNodeByID(request.segmentation_node_id)
        volume = self.scene.GetNodeByID(request.volume_node_id)
        current_segment = (
            segment_stamp(segmentation, request.segment_id, request.index_to_seg) if segmentation else None
        )
        return volume is not None and image_stamp(volume) == request.image_stamp and (
            current_segment == request.segment_stamp
        )

    def abandon(self, request: Request) -> None:
        """Main thread, after run() raised: remember what did reach the backend; the segments stay untouched."""
        handed = request.progress.read()
        self._note_sent(request, handed)
        current = self.is_current(request)
        for (step, _), record in zip(request.plans, handed.records):
            step.finish(request, record, current)

    def sync(self) -> None:
        """Send the image and segment now if the backend lacks them, so the next prompt does not wait for the upload."""
        request = self.prepare(SYNC)
        try:
            self.run(request)
        finally:
            self.abandon(request)

    def submit(self, prompt_or_builder: Any) -> Outcome:
        """prepare + run + apply on the calling thread (scripts, tests, benchmarks)."""
        request = self.prepare(prompt_or_builder)
        try:
            result = self.run(request)
        except BaseException:
            self.abandon(request)
            raise
        return self.apply(request, result)

    def _segment_mask(self, segmentation, request: Request) -> np.ndarray | None:
        mask = read_mask(segmentation, request.segment_id, request.index_to_seg, full_box(request.geometry.shape))
        return mask if mask.any() else None

    def _note_sent(self, request: Request, handed: Handed) -> None:
        if request.backend is not self._backend:
            return  # the backend was switched meanwhile: the new one has been sent nothing
        if handed.image_sent:
            self._sent_image = request.image_stamp
            self._sent_segment = None
        if handed.mask_sent:
            self._sent_segment = request.segment_stamp
        if handed.image_sent or handed.mask_sent:  # a new starting point: earlier prompts are out of reach
            self._drop_steps()


def _image_copy(volume_node) -> np.ndarray:
    """A (k, j, i) copy of the voxels: the worker thread must not read VTK memory the scene may free."""
    image = volume_node.GetImageData()
    i, j, k = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i).copy()

