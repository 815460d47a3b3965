"""The contract every backend passes, written once and run against each backend kind.

The backends run the real nnInteractive inference code on the CPU with the synthetic model.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import blob_centre, disk_crop, prompt_script

from nninteractive_slicer.errors import InvalidPromptError, NoImageError, UndoError
from nninteractive_slicer.interface import (
    PROMPT_KINDS,
    BBox,
    Lasso,
    Point,
    PromptResult,
    Scribble,
    UndoState,
    box_slices,
)


def one_prompt(kind: str, shape: tuple[int, int, int], positive: bool = True):
    """A prompt of ``kind`` over the blob; box/lasso/scribble on an axial (axis 0) plane."""
    c = blob_centre(shape)
    if kind == "point":
        return Point(c, positive)
    box = ((c[0], c[0] + 1), (c[1] - 6, c[1] + 7), (c[2] - 6, c[2] + 7))
    if kind == "bbox":
        return BBox(box, positive)
    crop = disk_crop((13, 13), 0, filled=kind == "lasso")
    return (Lasso if kind == "lasso" else Scribble)(crop, box, positive)


def check_patch(result: PromptResult, mirror: np.ndarray, backend) -> None:
    """Apply the changed region to the caller's copy and compare it with the backend's full mask."""
    if result.changed:
        assert result.patch.dtype == np.uint8
        assert result.patch.shape == tuple(hi - lo for lo, hi in result.box)
        assert set(np.unique(result.patch)) <= {0, 1}
    result.apply_to(mirror)
    np.testing.assert_array_equal(mirror, backend.get_mask())


def test_capabilities_describe_the_model(make_backend):
    caps = make_backend().capabilities()
    assert set(caps.prompt_kinds) == set(PROMPT_KINDS)
    assert caps.supports_3d_bbox is False  # the synthetic model declares the default (2D boxes only)
    assert caps.scribble_thickness == (2, 2, 2)
    assert caps.license.startswith("Apache-2.0")
    assert caps.device.startswith("cpu")
    assert caps.undo_depth >= 1


@pytest.mark.parametrize("positive", [True, False], ids=["positive", "negative"])
@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_prompt_returns_exactly_the_changed_region(make_backend, image64, kind, positive):
    backend = make_backend()
    backend.set_image(image64, (1.0, 1.2, 0.8))
    mirror = np.zeros(image64.shape, np.uint8)
    if not positive:  # a negative prompt needs something to remove
        check_patch(backend.prompt(Point(blob_centre(image64.shape), True)), mirror, backend)
        assert mirror.any()
    before = mirror.copy()
    result = backend.prompt(one_prompt(kind, image64.shape, positive))
    check_patch(result, mirror, backend)
    if result.changed:
        outside = np.ones(mirror.shape, bool)
        outside[box_slices(result.box)] = False
        np.testing.assert_array_equal(mirror[outside], before[outside])
    if positive:
        assert mirror.any()


def test_prompt_sequence_is_reproducible(make_backend, image64):
    backend = make_backend()
    masks = []
    for _ in range(2):
        backend.set_image(image64)
        mirror = np.zeros(image64.shape, np.uint8)
        for prompt in prompt_script(image64.shape, seed=3, count=6):
            check_patch(backend.prompt(prompt), mirror, backend)
        masks.append(mirror)
    assert masks[0].any()
    np.testing.assert_array_equal(masks[0], masks[1])


def test_undo_restores_the_previous_mask(make_backend, image64):
    backend = make_backend()
    backend.set_image(image64)
    mirror = np.zeros(image64.shape, np.uint8)
    check_patch(backend.prompt(one_prompt("point", image64.shape)), mirror, backend)
    after_first = mirror.copy()
    check_patch(backend.prompt(one_prompt("lasso", image64.shape, positive=False)), mirror, backend)
    assert not np.array_equal(mirror, after_first)
    check_patch(backend.undo(), mirror, backend)
    np.testing.assert_array_equal(mirror, after_first)


def take(backend, step: tuple, mirror: np.ndarray) -> None:
    """One step of a history: a starting mask, a prompt or a reset, mirrored into the caller's copy."""
    kind, arg = step
    if kind == "mask":
        backend.set_initial_mask(arg)
        mirror[...] = arg
    elif kind == "reset":
        backend.reset()
        mirror.fill(0)
    else:
        check_patch(backend.prompt(arg), mirror, backend)


def same_result(a: PromptResult, b: PromptResult) -> None:
    assert a.box == b.box
    np.testing.assert_array_equal(a.patch, b.patch)


def test_undo_and_redo_many_steps_are_exact(make_backend, image64):
    """Undo k / redo k reach the masks of the way there, and the next prompt gives what a fresh session gives."""
    backend = make_backend()
    caps = backend.capabilities()
    backend.set_image(image64)
    shape = image64.shape
    if caps.undo_depth < 2 or not caps.supports_redo:  # declared: one level, no redo (the official server)
        backend.prompt(one_prompt("point", shape))
        backend.prompt(one_prompt("bbox", shape))
        before = backend.get_mask()
        for call in (lambda: backend.undo(2), backend.redo):
            with pytest.raises(UndoError):
                call()
            np.testing.assert_array_equal(backend.get_mask(), before)
        assert backend.undo_state() == UndoState(undo=1, redo=0)
        return
    start = np.zeros(shape, np.uint8)
    start[24:30, 24:30, 24:30] = 1
    c = blob_centre(shape)
    steps = [("mask", start), ("prompt", one_prompt("point", shape)), ("prompt", one_prompt("lasso", shape, False)),
             ("reset", None), ("prompt", one_prompt("bbox", shape)), ("prompt", Point((c[0] + 3, c[1], c[2])))]
    mirror = np.zeros(shape, np.uint8)
    masks = [mirror.copy()]
    for step in steps:
        take(backend, step, mirror)
        masks.append(mirror.copy())
    n = len(steps)
    assert len({m.tobytes() for m in masks}) >= 5  # the steps really differ
    assert backend.undo_state() == UndoState(undo=n, redo=0)
    for k in range(1, n + 1):
        check_patch(backend.undo(k), mirror, backend)
        np.testing.assert_array_equal(mirror, masks[n - k])
        assert backend.undo_state() == UndoState(undo=n - k, redo=k)
        check_patch(backend.redo(k), mirror, backend)
        np.testing.assert_array_equal(mirror, masks[n])
    for k in range(1, n + 1):
        check_patch(backend.undo(), mirror, backend)
        np.testing.assert_array_equal(mirror, masks[n - k])
    for k in range(1, n + 1):
        check_patch(backend.redo(), mirror, backend)
        np.testing.assert_array_equal(mirror, masks[k])

    probe = one_prompt("scribble", shape)
    fresh = make_backend()
    for kept, (undo, redo) in ((3, (4, 1)), (1, (2, 0))):  # undo, then redo, then prompt; later undo only
        check_patch(backend.undo(undo), mirror, backend)
        if redo:
            check_patch(backend.redo(redo), mirror, backend)
        np.testing.assert_array_equal(mirror, masks[kept])
        got = backend.prompt(probe)
        check_patch(got, mirror, backend)
        fresh.set_image(image64)
        fresh_mirror = np.zeros(shape, np.uint8)
        for step in steps[:kept]:
            take(fresh, step, fresh_mirror)
        expected = fresh.prompt(probe)
        same_result(got, expected)
        check_patch(expected, fresh_mirror, fresh)
        np.testing.assert_array_equal(mirror, fresh_mirror)
        # The new prompt dropped what could have been redone.
        assert backend.undo_state().redo == 0
        with pytest.raises(UndoError):
            backend.redo()
        np.testing.assert_array_equal(backend.get_mask(), mirror)
        check_patch(backend.undo(), mirror, backend)  # the probe


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1", True, None])
def test_bad_undo_and_redo_steps_are_errors_that_change_nothing(make_backend, image64, bad):
    backend = make_backend()
    with pytest.raises(NoImageError):
        backend.undo()
    backend.set_image(image64)
    backend.prompt(one_prompt("point", image64.shape))
    before, history = backend.get_mask(), backend.undo_state()
    for call in (backend.undo, backend.redo):
        with pytest.raises(InvalidPromptError):
            call(bad)
        np.testing.assert_array_equal(backend.get_mask(), before)
        assert backend.undo_state() == history


def test_undo_past_the_history_is_an_error_that_changes_nothing(make_backend, image64):
    backend = make_backend()
    backend.set_image(image64)
    assert backend.undo_state() == UndoState(undo=0, redo=0)
    backend.prompt(one_prompt("point", image64.shape))
    backend.prompt(one_prompt("bbox", image64.shape))
    before, history = backend.get_mask(), backend.undo_state()
    assert history.undo >= 1
    for steps in (history.undo + 1, backend.capabilities().undo_depth + 1):
        with pytest.raises(UndoError, match="undo"):
            backend.undo(steps)
        np.testing.assert_array_equal(backend.get_mask(), before)
        assert backend.undo_state() == history
    with pytest.raises(UndoError, match="redo"):
        backend.redo()
    assert backend.undo_state() == history
    mirror = before.copy()
    check_patch(backend.undo(history.undo), mirror, backend)  # what is there can still be undone


def test_reset_clears_the_object_but_keeps_the_image(make_backend, image64):
    backend = make_backend()
    backend.set_image(image64)
    backend.prompt(one_prompt("point", image64.shape))
    backend.reset()
    assert not backend.get_mask().any()
    mirror = np.zeros(image64.shape, np.uint8)
    check_patch(backend.prompt(one_prompt("bbox", image64.shape)), mirror, backend)
    assert mirror.any()


def test_starting_mask_becomes_the_current_object(make_backend, image64):
    backend = make_backend()
    backend.set_image(image64)
    start = np.zeros(image64.shape, np.uint8)
    start[20:40, 20:40, 20:40] = 1
    backend.set_initial_mask(start.astype(bool))
    np.testing.assert_array_equal(backend.get_mask(), start)
    with_start = start.copy()
    check_patch(backend.prompt(one_prompt("point", image64.shape)), with_start, backend)
    backend.set_initial_mask(None)
    assert not backend.get_mask().any()
    from_empty = np.zeros(image64.shape, np.uint8)
    check_patch(backend.prompt(one_prompt("point", image64.shape)), from_empty, backend)
    # The model saw the starting mask: the same prompt gives another result without it.
    assert not np.array_equal(with_start, from_empty)


def test_new_image_starts_empty(make_backend, image64):
    backend = make_backend()
    backend.set_image(image64)
    backend.prompt(one_prompt("point", image64.shape))
    smaller = np.ascontiguousarray(image64[:, :60, :62])
    backend.set_image(smaller)
    assert backend.image_shape == smaller.shape
    assert backend.get_mask().shape == smaller.shape
    assert not backend.get_mask().any()
    assert backend.upload_progress() is None  # nothing is being sent once set_image returned


C = blob_centre((64, 64, 64))
BAD_PROMPTS = {
    "point outside": Point((64, 10, 10)),
    "point negative index": Point((-1, 10, 10)),
    "point NaN": Point((float("nan"), 10, 10)),
    "point fractional": Point((10.5, 10, 10)),
    "point string": Point(("10", 10, 10)),
    "point two axes": Point((10, 10)),
    "box outside": BBox(((30, 31), (50, 70), (10, 20))),
    "box empty axis": BBox(((30, 30), (10, 20), (10, 20))),
    "box 3D unsupported": BBox(((20, 30), (10, 20), (10, 20))),
    "box malformed": BBox(((1, 2, 3), (10, 20))),
    "scribble shape mismatch": Scribble(np.ones((1, 5, 5), np.uint8), ((30, 31), (10, 20), (10, 20))),
    "scribble empty": Scribble(np.zeros((1, 10, 10), np.uint8), ((30, 31), (10, 20), (10, 20))),
    "lasso float crop": Lasso(np.ones((1, 10, 10), np.float32), ((30, 31), (10, 20), (10, 20))),
    "lasso outside": Lasso(np.ones((1, 10, 10), np.uint8), ((30, 31), (60, 70), (10, 20))),
    "positive not a bool": Point(C, positive="yes"),
}


def test_invalid_input_raises_typed_errors_and_changes_nothing(make_backend, image64):
    backend = make_backend()
    with pytest.raises(NoImageError):
        backend.prompt(Point((1, 1, 1)))
    with pytest.raises(NoImageError):
        backend.set_initial_mask(np.zeros((4, 4, 4), np.uint8))
    backend.set_image(image64)
    backend.prompt(one_prompt("point", image64.shape))
    before = backend.get_mask()
    assert before.any()
    for name, prompt in BAD_PROMPTS.items():
        with pytest.raises(InvalidPromptError):
            backend.prompt(prompt)
        np.testing.assert_array_equal(backend.get_mask(), before, err_msg=name)
    with pytest.raises(InvalidPromptError):
        backend.prompt("a point")  # not a prompt at all
    for bad_mask in (np.zeros((64, 64, 63), np.uint8), np.zeros((64, 64, 64), np.float32)):
        with pytest.raises(InvalidPromptError):
            backend.set_initial_mask(bad_mask)
    for bad_image, spacing in [
        (np.zeros((64, 64), np.float32), (1, 1, 1)),
        (np.empty((4, 4, 4), object), (1, 1, 1)),
        (np.zeros((4, 4, 4), np.float32), (1, 1, 1)),  # all zero: cannot be normalised
        (image64, (1, -1, 1)),
        (image64, (1, float("nan"), 1)),
    ]:
        with pytest.raises(InvalidPromptError):
            backend.set_image(bad_image, spacing)
    np.testing.assert_array_equal(backend.get_mask(), before)
    # The backend is still usable after all that.
    mirror = before.copy()
    check_patch(backend.prompt(one_prompt("bbox", image64.shape)), mirror, backend)
