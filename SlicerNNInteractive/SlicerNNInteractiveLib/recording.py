"""A prompt session that records each segment's history and resumes segments from their saved history.

Every step that reaches a segment (prompt, undo, redo, a restart from the segment as it is) is
recorded and written into the scene at once (:mod:`.history_store`), so saving the scene saves it.

When a segment's history comes from the scene (a reopened scene) and ends exactly in the segment's
voxels, on the same image and model, the backend replays it once before the next prompt: the model
is where it was when the scene was saved, and the next prompt gives what it would have given
without the restart. Otherwise the user is told why, the segment stays as saved, and the model
starts from it (as for any segment edited by hand).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from nninteractive_slicer.history import (
    History,
    HistoryFormatError,
    HistoryRecorder,
    ImageIdentity,
    ModelIdentity,
    mask_digest,
    replay,
)
from nninteractive_slicer.interface import PromptResult, changed_box

from .errors import PromptError
from .history_store import HistoryAutosave, read_history, write_history
from .segments import full_box, read_mask
from .session import UNDO, Outcome, PreparedPrompt, PromptSession

REDO = "redo"


@dataclass(frozen=True, eq=False)
class ReplayRequest:
    """Replay ``history`` into the selected segment (the "Replay history" action); pass it to prepare()."""

    history: History


@dataclass(eq=False)
class HistoryPlan:
    """What one prompt needs for the history, filled in by prepare (main thread) and run (worker thread)."""

    saved: History | None = None  # the segment's history from the scene, to rebuild the model state from
    identity: ImageIdentity | None = None
    model: ModelIdentity | None = None
    rebuilt: np.ndarray | None = None  # the mask the rebuild ended in, once it reproduced the history
    notice: str = ""
    progress: tuple[int, int] = (0, 0)  # steps replayed / to replay, for a progress bar


class RecordingPromptSession(PromptSession):
    def __init__(self, *args: Any, autosave: HistoryAutosave | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.autosave = autosave or HistoryAutosave()
        self._recorders: dict[tuple[str, str], HistoryRecorder] = {}
        self._identities: dict[tuple, ImageIdentity] = {}

    def history(self, segmentation_node_id: str, segment_id: str) -> History | None:
        """The history recorded in this session for a segment (None until its first step here)."""
        recorder = self._recorders.get((segmentation_node_id, segment_id))
        return None if recorder is None else recorder.history

    # -- the three steps ------------------------------------------------------------------------
    def prepare(self, prompt_or_builder: Any) -> PreparedPrompt:
        prepared = super().prepare(prompt_or_builder)
        plan = HistoryPlan(identity=self._identities.get(prepared.image_stamp))
        prepared.history = plan
        segmentation = self.scene.GetNodeByID(prepared.segmentation_node_id)
        if isinstance(prepared.prompt, ReplayRequest):
            plan.saved = prepared.prompt.history
            if not prepared.send_mask:  # the replay result is written relative to the segment as it is
                prepared.send_mask = True
                mask = read_mask(segmentation, prepared.segment_id, prepared.index_to_seg,
                                 full_box(prepared.geometry.shape))
                prepared.mask = mask if mask.any() else None
        elif prepared.send_mask and (prepared.segmentation_node_id, prepared.segment_id) not in self._recorders:
            try:
                plan.saved = read_history(segmentation, prepared.segment_id)
            except HistoryFormatError as exc:
                plan.notice = f"Its saved history cannot be used ({exc}); the segment continues as it is."
        return prepared

    def run(self, prepared: PreparedPrompt) -> PromptResult:
        plan: HistoryPlan = prepared.history
        if prepared.image is not None and plan.identity is None:
            plan.identity = ImageIdentity.of(prepared.image, prepared.geometry.index_to_world, prepared.spacing)
        if prepared.send_mask and prepared.backend is not None:
            plan.model = ModelIdentity.of(prepared.backend.capabilities())
        if isinstance(prepared.prompt, ReplayRequest):
            return self._replay_into_segment(prepared, plan)
        if plan.saved is not None and prepared.send_mask:
            self._rebuild(prepared, plan)
        return super().run(prepared)

    def apply(self, prepared: PreparedPrompt, result: PromptResult) -> Outcome:
        plan: HistoryPlan | None = prepared.history
        current = self.is_current(prepared)
        outcome = super().apply(prepared, result)
        if plan is not None and current:
            self._record(prepared, plan, result)
        if plan is not None and plan.notice:
            outcome = replace(outcome, message=f"{outcome.message} {plan.notice}")
        return outcome

    def abandon(self, prepared: PreparedPrompt) -> None:
        """The prompt failed, but a restart (or rebuild) that reached the backend is still a step of the object."""
        super().abandon(prepared)
        plan: HistoryPlan | None = prepared.history
        if plan is not None and prepared.mask_sent and self.is_current(prepared):
            self._record(prepared, plan, None)

    # -- rebuilding ------------------------------------------------------------------------------
    def _rebuild(self, prepared: PreparedPrompt, plan: HistoryPlan) -> None:
        """Worker thread: replay the saved history when it still describes this segment, image and model."""
        saved = plan.saved
        assert saved is not None
        segment = prepared.mask if prepared.mask is not None else np.zeros(prepared.geometry.shape, np.uint8)
        why = self._why_not_resumable(saved, plan, segment)
        if why:
            plan.notice = f"The segment stays as saved and the model starts from it: {why}."
            return
        self._replay(prepared, plan, saved)
        if plan.rebuilt is None:
            prepared.backend.set_initial_mask(prepared.mask)
            plan.notice = ("The model did not reproduce the segment's saved history on this backend; the segment "
                           "stays as saved and the model starts from it.")

    def _why_not_resumable(self, saved: History, plan: HistoryPlan, segment: np.ndarray) -> str:
        if saved.final_digest != mask_digest(segment):
            return "it was edited after its last nnInteractive step"
        if plan.identity is None or (plan.identity.digest, plan.identity.shape) != (saved.image.digest,
                                                                                     saved.image.shape):
            return "its history was made on another image"
        if plan.model is not None and plan.model.id != saved.model.id:
            return f"its history was made with the model {saved.model.id!r}, the backend now runs {plan.model.id!r}"
        return ""

    def _replay(self, prepared: PreparedPrompt, plan: HistoryPlan, saved: History) -> None:
        backend = prepared.backend
        if prepared.image is not None:
            backend.set_image(prepared.image, prepared.spacing)
            prepared.image, prepared.image_sent = None, True
        plan.progress = (0, len(saved.steps))
        report = replay(saved, backend, None, on_step=lambda done, total, _: setattr(plan, "progress", (done, total)))
        prepared.send_mask, prepared.mask_sent = False, True
        if mask_digest(report.mask) == saved.final_digest:
            plan.rebuilt = report.mask

    def _replay_into_segment(self, prepared: PreparedPrompt, plan: HistoryPlan) -> PromptResult:
        saved = plan.saved
        assert saved is not None
        if plan.identity is None or (plan.identity.digest, plan.identity.shape) != (saved.image.digest,
                                                                                     saved.image.shape):
            raise PromptError("This history was made on another image: select the volume it was made on.")
        self._replay(prepared, plan, saved)
        plan.rebuilt = plan.rebuilt if plan.rebuilt is not None else self._backend_mask(prepared)
        before = prepared.mask if prepared.mask is not None else np.zeros(prepared.geometry.shape, np.uint8)
        box = changed_box(before, plan.rebuilt)
        if box is None:
            return PromptResult()
        return PromptResult(box, plan.rebuilt[tuple(slice(lo, hi) for lo, hi in box)].copy())

    @staticmethod
    def _backend_mask(prepared: PreparedPrompt) -> np.ndarray:
        return prepared.backend.get_mask()

    # -- recording -------------------------------------------------------------------------------
    @staticmethod
    def _continues(plan: HistoryPlan) -> bool:
        saved, identity, model = plan.saved, plan.identity, plan.model
        return (saved is not None and identity is not None and model is not None
                and (identity.digest, identity.shape) == (saved.image.digest, saved.image.shape)
                and model.id == saved.model.id)

    def _record(self, prepared: PreparedPrompt, plan: HistoryPlan, result: PromptResult | None) -> None:
        key = (prepared.segmentation_node_id, prepared.segment_id)
        if plan.identity is not None:
            self._identities = {prepared.image_stamp: plan.identity}  # only the current image is worth keeping
        recorder = self._recorders.get(key)
        if prepared.mask_sent:
            if plan.rebuilt is not None and plan.saved is not None:
                recorder = HistoryRecorder.resume(plan.saved, plan.rebuilt)
            elif self._continues(plan):  # same image and model, but not resumable: the history goes on from here
                recorder = HistoryRecorder.resume(plan.saved, plan.saved.start_mask())
                recorder.mask_set(prepared.mask)
            elif recorder is not None and plan.identity is not None and recorder.history.image.digest == \
                    plan.identity.digest:
                recorder.mask_set(prepared.mask)
            elif plan.identity is not None and plan.model is not None and prepared.backend is not None:
                segmentation = self.scene.GetNodeByID(prepared.segmentation_node_id)
                name = segmentation.GetSegmentation().GetSegment(prepared.segment_id).GetName()
                recorder = HistoryRecorder(plan.identity, plan.model, prepared.backend.name, prepared.mask, name)
            else:
                recorder = None
            if recorder is None:
                self._recorders.pop(key, None)
                return
            self._recorders[key] = recorder
        if recorder is None:
            return
        prompt = prepared.prompt
        if result is not None and not isinstance(prompt, (str, ReplayRequest)):
            recorder.prompted(prompt, result)
        elif result is not None and prompt == UNDO:
            recorder.undone(result)
        elif result is not None and prompt == REDO:
            recorder.redone(result)
        elif not prepared.mask_sent:
            return  # nothing happened to the object
        write_history(self.scene.GetNodeByID(prepared.segmentation_node_id), prepared.segment_id, recorder.history)
        self.autosave.stepped(self.scene)
