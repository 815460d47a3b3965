"""The interface's own behaviour: validation, results and the replay journal. Torch-free (also run on Python 3.12)."""

from __future__ import annotations

import numpy as np
import pytest

from nninteractive_slicer.backends.journal import SessionJournal
from nninteractive_slicer.errors import InvalidPromptError, NoImageError
from nninteractive_slicer.interface import (
    BBox,
    Capabilities,
    Lasso,
    Point,
    PromptResult,
    Scribble,
    changed_box,
    validate_image,
    validate_mask,
    validate_prompt,
)

CAPS = Capabilities(backend="test", model_id="m", license="l", device="cpu")
SHAPE = (10, 20, 30)


def test_valid_prompts_come_back_normalised():
    point = validate_prompt(Point((np.int64(1), 2.0, 3)), SHAPE, CAPS)
    assert point.coord == (1, 2, 3) and all(type(c) is int for c in point.coord)
    box = validate_prompt(BBox([[4, 5], [0, 20], [np.int32(2), 30.0]], positive=np.bool_(False)), SHAPE, CAPS)
    assert box.box == ((4, 5), (0, 20), (2, 30)) and box.positive is False
    crop = np.zeros((1, 3, 4), bool)
    crop[0, 1, 1] = True
    lasso = validate_prompt(Lasso(crop, ((2, 3), (0, 3), (0, 4))), SHAPE, CAPS)
    assert lasso.mask.dtype == np.uint8 and lasso.mask.sum() == 1


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        (Point((10, 0, 0)), r"point \(10, 0, 0\) lies outside the image \(10, 20, 30\)"),
        (Point((0, 0, float("inf"))), "point must be three whole voxel indices"),
        (BBox(((0, 1), (0, 21), (0, 30))), "does not lie inside the image .* on axis 1: draw it on the image"),
        (BBox(((0, 2), (0, 20), (0, 30))), "is 3D, but the model 'm' only takes 2D boxes: draw the box on one slice"),
        (Scribble(np.ones((1, 2, 2), np.uint8), ((0, 1), (0, 3), (0, 2))),
         r"scribble crop has shape \(1, 2, 2\) but its box .* has \(1, 3, 2\)"),
    ],
)
def test_invalid_prompts_are_rejected_with_a_reason(prompt, reason):
    with pytest.raises(InvalidPromptError, match=reason):
        validate_prompt(prompt, SHAPE, CAPS)


def test_3d_boxes_pass_where_the_model_takes_them():
    caps = Capabilities(backend="t", model_id="m", license="l", device="cpu", supports_3d_bbox=True)
    assert validate_prompt(BBox(((0, 2), (0, 20), (0, 30))), SHAPE, caps).box[0] == (0, 2)


def test_unsupported_prompt_kind_is_named():
    caps = Capabilities(backend="t", model_id="m", license="l", device="cpu", prompt_kinds=("point",))
    with pytest.raises(InvalidPromptError, match="lasso"):
        validate_prompt(Lasso(np.ones((1, 1, 1), np.uint8), ((0, 1), (0, 1), (0, 1))), SHAPE, caps)


def test_prompt_before_image():
    with pytest.raises(NoImageError):
        validate_prompt(Point((0, 0, 0)), None, CAPS)
    with pytest.raises(NoImageError):
        validate_mask(np.zeros(SHAPE, np.uint8), None)


def test_images_and_masks():
    image = np.ones(SHAPE, np.int16)
    assert validate_image(image, [1, 2, 3]) == (image, (1.0, 2.0, 3.0))
    for bad in (np.ones(SHAPE, np.float16), np.ones(SHAPE, np.complex64), np.ones((2, 2), np.float32)):
        with pytest.raises(InvalidPromptError):
            validate_image(bad, (1, 1, 1))
    with pytest.raises(InvalidPromptError):
        validate_image(image, (1, 0, 1))
    assert validate_mask(np.full(SHAPE, 7, np.int32), SHAPE).max() == 1


def test_result_writes_only_its_box():
    mask = np.zeros(SHAPE, np.uint8)
    PromptResult(((1, 3), (2, 4), (5, 6)), np.ones((2, 2, 1), np.uint8)).apply_to(mask)
    assert mask.sum() == 4 and mask[1:3, 2:4, 5].all()
    PromptResult().apply_to(mask)
    assert mask.sum() == 4


def test_journal_replays_every_step_and_the_undo_and_drops_what_the_server_cannot_reach():
    journal = SessionJournal()
    journal.image_set("img", (1.0, 1.0, 2.0))
    first, second = Point((1, 1, 1)), Point((2, 2, 2))
    journal.prompted(first)
    start = np.ones(SHAPE, np.uint8)
    journal.object_started(start)
    journal.prompted(first)
    journal.prompted(second)
    journal.undone()
    journal.confirmed(3)  # the server can undo everything
    calls: list[tuple] = []
    replayed = journal.restore_into(
        lambda image, spacing: calls.append(("image", image, spacing)),
        lambda mask: calls.append(("mask", mask is start)),
        lambda: calls.append(("reset",)),
        lambda prompt: calls.append(("prompt", prompt)),
        lambda steps: calls.append(("undo", steps)),
    )
    assert replayed == 3
    assert calls == [("image", "img", (1.0, 1.0, 2.0)), ("prompt", first), ("mask", True), ("prompt", first),
                     ("prompt", second), ("undo", 1)]
    assert journal.undo_available == 3
    journal.confirmed(1)  # the server dropped its oldest steps: so does the journal, back to the object's start
    assert [kind for kind, _ in journal.steps] == ["mask", "prompt", "prompt"] and journal.undo_available == 1
    journal.undone(5)
    assert journal.undo_available == 0 and journal.current == 1
    journal.object_started(None)  # a new step drops what could have been redone
    assert [kind for kind, _ in journal.steps] == ["mask", "reset"]


def test_changed_box_is_tight_and_offset():
    before = np.zeros(SHAPE, np.uint8)
    after = before.copy()
    assert changed_box(before, after) is None
    after[2, 5, 7] = after[4, 3, 9] = 1
    assert changed_box(before, after) == ((2, 5), (3, 6), (7, 10))
    assert changed_box(before, after, offset=((1, 11), (2, 22), (3, 33))) == ((3, 6), (5, 8), (10, 13))
