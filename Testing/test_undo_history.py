"""Undo snapshots against nnInteractive's own session: which attributes hold its state, and exact restores.

If a new nnInteractive version keeps session state in an attribute the snapshots do not cover, the
first two tests fail and name it: undo would otherwise silently stop being exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from typing import Any

import numpy as np
import pytest
import torch
from synthetic import blob_centre, disk_crop, prompt_script

from nninteractive_slicer.engine.model_loading import load_model, new_inference_session
from nninteractive_slicer.engine.prompt_rng import seeded_prompt_rng
from nninteractive_slicer.engine.undo_history import (
    SNAPSHOT_ATTRIBUTES,
    UNCHANGED_BY_STEPS,
    UndoHistory,
    UndoStep,
    restore_snapshot,
    take_snapshot,
)
from nninteractive_slicer.errors import UndoError
from nninteractive_slicer.interface import Lasso, Point, Prompt

# Attributes a step may change that the next step does not read (see UNCHANGED_BY_STEPS); the first
# prompt also drops the finished preprocessing future.
REWRITTEN_BY_STEPS = {"_last_paste_bbox", "_undo_log", "_interactions_read_buffer", "preprocess_future"}


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    with contextlib.redirect_stdout(io.StringIO()):
        return load_model(model_dir=tiny_model_dir, device="cpu", torch_threads=2)


def new_session(model, image: np.ndarray, storage: str = "tensor") -> Any:
    """A bare nnInteractive session on ``image``, with a target buffer, as the engine builds it."""
    session = new_inference_session(model.device, model.torch_threads)
    session.interactions_storage = storage
    session.initialize_from_loaded_artifacts(model.artifacts)
    session.set_image(image[None], {"spacing": [1.0, 1.0, 1.0]})
    session.preprocess_future.result()
    session.set_target_buffer(np.zeros(image.shape, np.uint8))
    return session


def apply(session: Any, prompt: Prompt, seed: int) -> None:
    with seeded_prompt_rng(seed), contextlib.redirect_stdout(io.StringIO()):
        if prompt.kind == "point":
            session.add_point_interaction(prompt.coord, include_interaction=prompt.positive)
        elif prompt.kind == "bbox":
            session.add_bbox_interaction([list(r) for r in prompt.box], include_interaction=prompt.positive)
        else:
            add = session.add_lasso_interaction if prompt.kind == "lasso" else session.add_scribble_interaction
            add(prompt.mask, include_interaction=prompt.positive, interaction_bbox=[list(r) for r in prompt.box])


def fingerprint(value: Any) -> Any:
    """What an attribute holds, comparable across a step: array contents, else the object itself."""
    if isinstance(value, torch.Tensor):
        return hashlib.sha1(value.cpu().numpy().tobytes()).hexdigest()
    if isinstance(value, np.ndarray):
        return hashlib.sha1(value.tobytes()).hexdigest()
    if hasattr(value, "schunk"):  # blosc2 array
        return hashlib.sha1(value[...].tobytes()).hexdigest()
    if isinstance(value, (int, float, str, bool, type(None), list, tuple, set, dict)):
        return repr(value)
    return id(value)


def state(session: Any) -> dict[str, Any]:
    return {name: fingerprint(value) for name, value in vars(session).items()}


def test_snapshots_know_every_attribute_of_the_session(model, image64):
    session = new_session(model, image64)
    apply(session, Point(blob_centre(image64.shape)), 0)
    attributes = set(vars(session))
    known = set(SNAPSHOT_ATTRIBUTES) | set(UNCHANGED_BY_STEPS)
    assert attributes == known, (
        f"nnInteractive's session attributes changed: new {sorted(attributes - known)}, gone "
        f"{sorted(known - attributes)}. Decide for each whether undo snapshots must hold it "
        "(engine/undo_history.py), or undo is no longer exact."
    )


@pytest.mark.parametrize("storage", ["tensor", "blosc2"])
def test_steps_change_only_what_snapshots_hold(model, image64, storage):
    session = new_session(model, image64, storage)
    steps = [lambda p=p, i=i: apply(session, p, i) for i, p in enumerate(prompt_script(image64.shape, seed=5, count=4))]
    start = np.zeros(image64.shape, np.uint8)
    start[20:30, 20:30, 20:30] = 1
    steps.append(lambda: session.add_initial_seg_interaction(start, run_prediction=False))
    steps.append(session.reset_interactions)
    allowed = set(SNAPSHOT_ATTRIBUTES) | REWRITTEN_BY_STEPS
    for step in steps:
        before = state(session)
        step()
        after = state(session)
        changed = {name for name in after if after[name] != before.get(name)}
        assert changed <= allowed, f"a step changed {sorted(changed - allowed)}, which undo snapshots do not hold"


@pytest.mark.parametrize("storage", ["tensor", "blosc2"])
def test_restored_snapshot_gives_the_next_prompt_exactly_as_a_fresh_session(model, image64, storage):
    script = prompt_script(image64.shape, seed=7, count=5)
    probe = Lasso(disk_crop((13, 13), 0, filled=True), ((30, 31), (20, 33), (20, 33)))
    session = new_session(model, image64, storage)
    for i, prompt in enumerate(script[:2]):
        apply(session, prompt, i)
    after_two = take_snapshot(session)
    for i, prompt in enumerate(script[2:], start=2):
        apply(session, prompt, i)
    changed_mask = session.target_buffer.copy()
    restore_snapshot(session, after_two)
    apply(session, probe, 2)

    fresh = new_session(model, image64, storage)
    for i, prompt in enumerate(script[:2]):
        apply(fresh, prompt, i)
    apply(fresh, probe, 2)
    assert not np.array_equal(changed_mask, fresh.target_buffer)  # the restore had something to undo
    np.testing.assert_array_equal(session.target_buffer, fresh.target_buffer)
    assert state(session)["interactions"] == state(fresh)["interactions"]
    assert session.current_interaction_intensity == fresh.current_interaction_intensity
    assert session._dirty_channels == fresh._dirty_channels


def test_history_evicts_the_oldest_steps_within_its_budget(model, image64):
    session = new_session(model, image64)
    steps = []
    for i, prompt in enumerate(prompt_script(image64.shape, seed=2, count=5)):
        apply(session, prompt, i)
        steps.append(UndoStep(take_snapshot(session), i + 1, None))
    budget = sum(step.nbytes for step in steps[-3:])
    history = UndoHistory(budget_bytes=budget, max_steps=10)
    history.start(steps[0])
    for step in steps[1:]:
        history.add(step)
    assert (history.undo_available, history.redo_available, history.evicted) == (2, 0, 2)
    assert history.nbytes <= budget
    with pytest.raises(UndoError, match="Only 2 steps can be undone.*memory budget"):
        history.move(-3)
    assert history.current is steps[-1]  # the failed undo changed nothing
    assert history.move(-2)[0] is steps[-3]
    assert history.move(1)[0] is steps[-2]
    history.add(steps[0])  # a new step drops what could have been redone
    assert history.redo_available == 0
    with pytest.raises(UndoError, match="nothing to redo"):
        history.move(1)

    tiny = UndoHistory(budget_bytes=1, max_steps=10)  # not even one step fits: the current one stays
    tiny.start(steps[0])
    tiny.add(steps[1])
    assert (tiny.undo_available, tiny.current) == (0, steps[1])

    few = UndoHistory(max_steps=2)
    few.start(steps[0])
    for step in steps[1:]:
        few.add(step)
    assert few.undo_available == 2
    assert few.move(-2)[0] is steps[2]
