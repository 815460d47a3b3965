"""Segment histories: each segment's steps recorded into the scene, and resumed from it after a reopen.

They plug into the :class:`~.pipeline.PromptPipeline` at both of its extension points:

* bringing the backend up to date (:meth:`SegmentHistories.catch_up`): when a segment's history comes
  from the scene (a reopened scene) and ends exactly in the segment's voxels, on the same image and
  model, the backend replays it once before the next prompt, so the model is where it was when the
  scene was saved and the next prompt gives what it would have given without the restart. Otherwise
  the user is told why, the segment stays as saved, and the model starts from it.
* after a step (:meth:`SegmentHistories.record` on the worker thread, :meth:`SegmentHistories.finish`
  on the main thread): every step that reached the model (prompt, undo, redo, a restart from the
  segment as it is) is recorded, and the history's text is written into the scene at once
  (:mod:`.history_store`), so saving the scene saves it.

Every digest, encode and decode happens on the worker thread; the main thread only moves finished
values (a recorder, a text) in and out of the scene, so a CT-sized segment costs the GUI nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nninteractive_slicer import history as history_io
from nninteractive_slicer.history import (
    History,
    HistoryFormatError,
    HistoryRecorder,
    ImageIdentity,
    ModelIdentity,
    mask_digest,
    replay,
)
from nninteractive_slicer.interface import Backend, Prompt, PromptResult, changed_box

from .errors import PromptError
from .history_store import HistoryAutosave, parse_history, saved_history_text, store_history_text
from .pipeline import REDO, UNDO, PromptPipeline, Request, SendImageAndMask, UndoHooks
from .segments import ImageStamp
from .selection import SegmentSelection


@dataclass(frozen=True, eq=False)
class ReplayRequest:
    """Replay ``history`` into the selected segment (the "Replay history" action); pass it to prepare()."""

    history: History


@dataclass(eq=False)
class _Work:
    """What the worker finds out for one request, between bringing the backend up to date and recording.

    Created empty on the main thread with the plan; from then on only the worker touches it (the main
    thread gets :class:`_Recorded` instead).
    """

    saved: History | None = None  # the history to rebuild the model from (parsed on the worker)
    identity: ImageIdentity | None = None
    model: ModelIdentity | None = None
    rebuilt: np.ndarray | None = None  # the mask the rebuild ended in, once it reproduced the history
    notice: str = ""


@dataclass(frozen=True, eq=False)
class _Plan:
    """What the main thread hands the worker: the segment's recorder (the worker owns it until ``finish``)."""

    key: tuple[str, str]
    recorder: HistoryRecorder | None
    saved_text: str | None  # the segment's saved history, when the backend is to get the segment
    replay: History | None  # a history to replay into the segment
    identity: ImageIdentity | None  # the current image's, when known from an earlier step
    work: _Work = field(default_factory=_Work)


@dataclass(frozen=True, eq=False)
class _Recorded:
    """What the worker hands back: the recorder, the history's new text (None: unchanged), a notice."""

    key: tuple[str, str]
    recorder: HistoryRecorder | None
    text: str | None
    identity: ImageIdentity | None
    notice: str


class SegmentHistories:
    """Records and resumes segment histories for one pipeline (see the module docstring)."""

    def __init__(self, scene, autosave: HistoryAutosave | None = None) -> None:
        self.scene = scene
        self.autosave = autosave or HistoryAutosave()
        self._recorders: dict[tuple[str, str], HistoryRecorder] = {}
        self._identities: dict[ImageStamp, ImageIdentity] = {}
        self._default = SendImageAndMask()

    def history(self, segmentation_node_id: str, segment_id: str) -> History | None:
        """The history recorded in this session for a segment (None until its first step here)."""
        recorder = self._recorders.get((segmentation_node_id, segment_id))
        return None if recorder is None else recorder.history

    # -- main thread, before ------------------------------------------------------------------
    def plan(self, request: Request) -> _Plan:
        key = (request.segmentation_node_id, request.segment_id)
        recorder = self._recorders.pop(key, None)
        replay_history = request.prompt.history if isinstance(request.prompt, ReplayRequest) else None
        saved_text = None
        if replay_history is None and request.send_mask and recorder is None:
            saved_text = saved_history_text(self.scene.GetNodeByID(request.segmentation_node_id), request.segment_id)
        return _Plan(key, recorder, saved_text, replay_history, self._identities.get(request.image_stamp))

    def needs_mask(self, request: Request) -> bool:
        """A replay's result is written relative to the segment as it is."""
        return isinstance(request.prompt, ReplayRequest)

    # -- worker thread -------------------------------------------------------------------------
    def catch_up(self, request: Request, backend: Backend) -> PromptResult | None:
        plan = _plan_of(request, self)
        work = plan.work
        work.identity = plan.identity
        if request.image is not None and work.identity is None:
            work.identity = ImageIdentity.of(request.image, request.geometry.index_to_world, request.spacing)
        if request.send_mask:
            work.model = ModelIdentity.of(backend.capabilities())
        if plan.replay is not None:
            return self._replay_into_segment(request, backend, work, plan.replay)
        if plan.saved_text is not None:
            try:
                work.saved = parse_history(plan.saved_text, request.segment_name)
            except HistoryFormatError as exc:
                work.notice = f"Its saved history cannot be used ({exc}); the segment continues as it is."
        if work.saved is not None and request.send_mask and self._rebuild(request, backend, work, work.saved):
            return None
        return self._default.catch_up(request, backend)

    def _rebuild(self, request: Request, backend: Backend, work: _Work, saved: History) -> bool:
        """Replay the saved history when it still describes this segment, image and model; True when it did."""
        segment = request.start_mask()
        if request.mask is None and saved.final_digest == mask_digest(segment):
            work.saved = None  # it ended empty: nothing to resume, and an empty segment starts a new history
            return False
        why = _why_not_resumable(saved, work, segment)
        if why:
            work.notice = f"The segment stays as saved and the model starts from it: {why}."
            return False
        self._replay(request, backend, work, saved)
        if work.rebuilt is None:
            backend.set_initial_mask(request.mask)
            work.notice = ("The model did not reproduce the segment's saved history on this backend; the segment "
                           "stays as saved and the model starts from it.")
        return True

    @staticmethod
    def _replay(request: Request, backend: Backend, work: _Work, saved: History) -> None:
        if request.image is not None:
            backend.set_image(request.image, request.spacing)
            request.progress.update(image_sent=True)
        request.progress.update(replayed=(0, len(saved.steps)))
        report = replay(saved, backend, None,
                        on_step=lambda done, total, _: request.progress.update(replayed=(done, total)))
        request.progress.update(mask_sent=True)
        if mask_digest(report.mask) == saved.final_digest:
            work.rebuilt = report.mask

    def _replay_into_segment(self, request: Request, backend: Backend, work: _Work, saved: History) -> PromptResult:
        if work.identity is None or (work.identity.digest, work.identity.shape) != (saved.image.digest,
                                                                                     saved.image.shape):
            raise PromptError("This history was made on another image: select the volume it was made on.")
        work.saved = saved
        self._replay(request, backend, work, saved)
        rebuilt = work.rebuilt if work.rebuilt is not None else backend.get_mask()
        work.rebuilt = rebuilt
        box = changed_box(request.start_mask(), rebuilt)
        if box is None:
            return PromptResult()
        return PromptResult(box, rebuilt[tuple(slice(lo, hi) for lo, hi in box)].copy())

    def record(self, request: Request, plan: _Plan, result: PromptResult | None) -> _Recorded:
        """After the backend call (``result`` None when it failed): the step, digested, and the history's text."""
        work = plan.work
        mask_sent = request.progress.read().mask_sent
        recorder = plan.recorder
        if mask_sent:
            recorder = self._restarted(request, work, recorder)
        text = None
        if recorder is not None:
            prompt = request.prompt
            if result is not None and isinstance(prompt, Prompt):
                recorder.prompted(prompt, result)
            elif result is not None and prompt == UNDO:
                recorder.undone(result)
            elif result is not None and prompt == REDO:
                recorder.redone(result)
            if mask_sent or (result is not None and (isinstance(prompt, Prompt) or prompt in (UNDO, REDO))):
                text = history_io.dumps(recorder.history)
        return _Recorded(plan.key, recorder, text, work.identity, work.notice)

    @staticmethod
    def _restarted(request: Request, work: _Work, recorder: HistoryRecorder | None) -> HistoryRecorder | None:
        """The object restarted from the segment (or a rebuild): the recorder that goes on from here."""
        saved, identity, model, backend = work.saved, work.identity, work.model, request.backend
        if work.rebuilt is not None and saved is not None:
            return HistoryRecorder.resume(saved, work.rebuilt)
        if saved is not None and _continues(saved, identity, model):  # same image and model, not resumable: go on
            recorder = HistoryRecorder.resume(saved, saved.start_mask())
            recorder.mask_set(request.mask)
            return recorder
        if identity is None or model is None or backend is None:
            return None
        if recorder is not None and (recorder.history.image.digest, recorder.history.model.id,
                                     recorder.history.backend) == (identity.digest, model.id, backend.kind):
            recorder.mask_set(request.mask)  # same image, model and backend: the object goes on in its history
            return recorder
        return HistoryRecorder(identity, model, backend.kind, request.mask, request.segment_name)

    # -- main thread, after --------------------------------------------------------------------
    def finish(self, request: Request, record: _Recorded, current: bool) -> str:
        """Take the recorder back and store the history's text in the scene (saved with it); autosave."""
        if record.recorder is None:
            self._recorders.pop(record.key, None)
        else:
            self._recorders[record.key] = record.recorder
        if record.identity is not None:
            self._identities = {request.image_stamp: record.identity}  # only the current image is worth keeping
        node = self.scene.GetNodeByID(request.segmentation_node_id)
        if record.text is not None and node is not None:
            store_history_text(node, request.segment_id, record.text)
            self.autosave.stepped(self.scene)
        return record.notice


def _plan_of(request: Request, histories: SegmentHistories) -> _Plan:
    for step, plan in request.plans:
        if step is histories:
            return plan
    raise AssertionError("the request was prepared without these segment histories")


def _why_not_resumable(saved: History, work: _Work, segment: np.ndarray) -> str:
    if saved.final_digest != mask_digest(segment):
        return "it was edited after its last nnInteractive step"
    if work.identity is None or (work.identity.digest, work.identity.shape) != (saved.image.digest,
                                                                                 saved.image.shape):
        return "its history was made on another image"
    if work.model is not None and work.model.id != saved.model.id:
        return f"its history was made with the model {saved.model.id!r}, the backend now runs {work.model.id!r}"
    return ""


def _continues(saved: History, identity: ImageIdentity | None, model: ModelIdentity | None) -> bool:
    return (identity is not None and model is not None
            and (identity.digest, identity.shape) == (saved.image.digest, saved.image.shape)
            and model.id == saved.model.id)


def recording_pipeline(scene, backend: Backend | None, editor_node, app_logic=None, undo: UndoHooks | None = None,
                       autosave: HistoryAutosave | None = None, selection: SegmentSelection | None = None
                       ) -> PromptPipeline:
    """A pipeline whose segments keep their histories in the scene (what the Logic runs)."""
    histories = SegmentHistories(scene, autosave)
    return PromptPipeline(scene, backend, editor_node, app_logic, undo, catch_up=histories, after_step=[histories],
                          selection=selection)
