"""End to end on real MRML (slicer-core) with the real local backend and the tiny model.

Markups placed in the scene -> PromptPipeline -> LocalBackend -> the segment, written through
Slicer's Segment Editor logic. Uploads are counted with a wrapper around the real backend.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk
from slicer_scene import CountingBackend, make_scene, oblique_lps_matrix, rigid_transform
from synthetic import blob_centre, mr_like_image

from nninteractive_slicer.errors import BackendUnavailableError
from SlicerNNInteractiveLib import (
    REDO,
    UNDO,
    PromptError,
    PromptPipeline,
    VolumeGeometry,
    box_prompt,
    control_points_world,
    curve_points_world,
    lasso_prompt,
    point_prompt,
    roi_frame_world,
    scribble_prompt,
)
from SlicerNNInteractiveLib.logic import error_text
from SlicerNNInteractiveLib.segment_writer import UndoHooks, WriteError
from SlicerNNInteractiveLib.segments import full_box, grid_image, index_to_segmentation, read_mask

SHAPE = (64, 64, 64)
DEPTH = 31  # prompts: 30 undos, past the Segment Editor's 20 states
Editor = slicer.vtkMRMLSegmentEditorNode


@pytest.fixture(scope="module")
def real_backend(local_backend_factory):
    backend = local_backend_factory()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return mr_like_image(SHAPE, seed=1)


class World:
    """A scene with an oblique LPS volume under a rigid transform, a segmentation and a Segment Editor node."""

    def __init__(self, image: np.ndarray, backend: CountingBackend) -> None:
        self.s = make_scene()
        self.volume = self.s.volume(image, oblique_lps_matrix(spacing=(0.8, 0.9, 1.3)))
        transform = self.s.linear_transform(rigid_transform(0.25, (3.0, -2.0, 4.0)))
        self.volume.SetAndObserveTransformNodeID(transform.GetID())
        self.segmentation = self.s.segmentation(self.volume)
        self.editor = self.s.editor_node(self.volume, self.segmentation)
        self.editor.SetOverwriteMode(Editor.OverwriteNone)
        self.backend = backend
        self.pipeline = PromptPipeline(self.s.scene, backend, self.editor, self.s.app_logic)

    def world(self, kji) -> np.ndarray:
        g = VolumeGeometry.from_volume_node(self.volume)
        return (g.index_to_world @ np.r_[np.asarray(kji, float), 1.0])[:3]

    def fiducial(self, kji):
        node = self.s.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
        node.AddControlPointWorld(vtk.vtkVector3d(*self.world(kji)))
        return node

    def mask(self, segment_id: str) -> np.ndarray:
        return read_mask(self.segmentation, segment_id, self.index_to_seg(), full_box(SHAPE))

    def index_to_seg(self) -> np.ndarray:
        return index_to_segmentation(VolumeGeometry.from_volume_node(self.volume), self.segmentation)

    def add_segment(self, name: str, mask: np.ndarray | None = None) -> str:
        segment_id = self.segmentation.GetSegmentation().AddEmptySegment(name, name)
        if mask is not None:
            self.paint(segment_id, mask, slicer.vtkSlicerSegmentEditorLogic.ModificationModeAdd)
        return segment_id

    def paint(self, segment_id: str, mask: np.ndarray, mode) -> None:
        """Edit a segment the way another Segment Editor effect would (its own logic, masking bypassed)."""
        logic = slicer.vtkSlicerSegmentEditorLogic()
        logic.SetMRMLScene(self.s.scene)
        logic.SetSegmentEditorNode(self.editor)
        modifier = grid_image(self.index_to_seg(), full_box(SHAPE), mask)
        logic.ModifySegmentByLabelmap(self.segmentation, segment_id, modifier, mode, True, True)

    def select(self, segment_id: str) -> None:
        self.editor.SetSelectedSegmentID(segment_id)

    def point(self, kji, positive: bool = True):
        node = self.fiducial(kji)
        return self.pipeline.submit(lambda g: point_prompt(control_points_world(node)[0], g, positive))


@pytest.fixture
def world(image, real_backend) -> World:
    return World(image, CountingBackend(real_backend))


def centre() -> tuple[int, int, int]:
    return blob_centre(SHAPE)


def cube(lo, hi) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1
    return mask


def test_markups_of_every_kind_end_as_the_backends_mask(world):
    c = centre()
    outcome = world.point(c)
    segment_id = outcome.segment_id
    assert outcome.written, outcome.message
    np.testing.assert_array_equal(world.mask(segment_id), world.backend.get_mask())

    roi = world.s.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    g = VolumeGeometry.from_volume_node(world.volume)
    axes = g.index_to_world[:3, :3] / np.linalg.norm(g.index_to_world[:3, :3], axis=0)
    roi.SetAndObserveObjectToNodeMatrix(
        slicer.util.vtkMatrixFromArray(np.block([[axes, np.zeros((3, 1))], [0, 0, 0, 1]]))
    )
    roi.SetCenterWorld(world.world(c))
    roi.SetSizeWorld([0.0, 16.0, 16.0])
    world.pipeline.submit(lambda geometry: box_prompt(*roi_frame_world(roi), geometry))
    np.testing.assert_array_equal(world.mask(segment_id), world.backend.get_mask())

    ring = [world.world((c[0] + 2, c[1] + 7 * np.cos(a), c[2] + 7 * np.sin(a))) for a in np.linspace(0, 6.2, 40)]
    curve = world.s.scene.AddNewNodeByClass("vtkMRMLMarkupsClosedCurveNode")
    curve.SetCurveTypeToLinear()
    for p in ring:
        curve.AddControlPointWorld(vtk.vtkVector3d(*p))
    world.pipeline.submit(lambda geometry: lasso_prompt(curve_points_world(curve), geometry))
    np.testing.assert_array_equal(world.mask(segment_id), world.backend.get_mask())

    stroke = [world.world((c[0] - 3, c[1] - 4 + d, c[2])) for d in range(9)]
    thickness = world.backend.capabilities().scribble_thickness
    world.pipeline.submit(
        lambda geometry: scribble_prompt(np.array(stroke), geometry, thickness, normal_world=geometry.plane_normal(0))
    )
    np.testing.assert_array_equal(world.mask(segment_id), world.backend.get_mask())
    assert world.backend.mask_uploads == 0  # a new empty segment: the fresh image's empty mask is enough
    assert world.backend.calls["set_image"] == 1


@pytest.mark.parametrize(
    "mode, other_visible, overwritten",
    [
        (Editor.OverwriteNone, True, False),
        (Editor.OverwriteVisibleSegments, False, False),
        (Editor.OverwriteVisibleSegments, True, True),
        (Editor.OverwriteAllSegments, False, True),
    ],
)
def test_other_segments_follow_the_overwrite_mode(world, mode, other_visible, overwritten):
    c = np.array(centre())
    before = cube(c - 6, c + 6)
    other = world.add_segment("other", before)
    world.segmentation.GetDisplayNode().SetSegmentVisibility(other, other_visible)
    world.editor.SetOverwriteMode(mode)
    outcome = world.point(tuple(c))
    result = world.backend.get_mask()
    assert (result & before).any(), "the prompt must reach into the other segment for this test to mean anything"
    np.testing.assert_array_equal(world.mask(outcome.segment_id), result)
    expected_other = before & ~result if overwritten else before
    np.testing.assert_array_equal(world.mask(other), expected_other)


def test_the_editable_area_is_honoured_and_the_segment_is_resent(world):
    c = centre()
    area = np.zeros(SHAPE, np.uint8)
    area[: c[0]] = 1  # only slices above the blob centre may change
    area_id = world.add_segment("area", area)
    target = world.add_segment("target")
    world.select(target)
    world.editor.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    world.editor.SetMaskSegmentID(area_id)
    outcome = world.point(c)
    result = world.backend.get_mask()
    assert (result & ~area).any() and (result & area).any()
    assert "masking" in outcome.message
    written = world.mask(target)
    np.testing.assert_array_equal(written, result & area)
    uploads = world.backend.mask_uploads
    world.point((c[0] - 2, c[1], c[2]))
    # The backend's mask and the segment differed, so the segment went back as the starting mask, once.
    assert world.backend.mask_uploads == uploads + 1
    np.testing.assert_array_equal(world.backend.last_mask, written)
    np.testing.assert_array_equal(world.mask(target) & ~area, np.zeros(SHAPE, np.uint8))


def test_the_editable_intensity_range_is_honoured(world, image):
    c = centre()
    low, high = np.percentile(image, [60, 100])
    world.editor.SetSourceVolumeIntensityMask(True)
    world.editor.SetSourceVolumeIntensityMaskRange(float(low), float(high))
    outcome = world.point(c)
    result = world.backend.get_mask()
    in_range = ((image >= low) & (image <= high)).astype(np.uint8)
    assert (result & ~in_range).any()
    np.testing.assert_array_equal(world.mask(outcome.segment_id), result & in_range)


def test_unchanged_image_and_segment_are_uploaded_once(world):
    c = centre()
    first = world.point(c).segment_id
    for dz in (1, -1, 2):
        world.point((c[0] + dz, c[1], c[2]))
    assert world.backend.calls["set_image"] == 1
    assert world.backend.mask_uploads == 0

    # Another effect edits the segment between prompts: it is sent exactly once.
    world.paint(first, cube(np.array(c) + 8, np.array(c) + 12), slicer.vtkSlicerSegmentEditorLogic.ModificationModeAdd)
    edited = world.mask(first)
    world.point((c[0], c[1] + 1, c[2]))
    assert world.backend.mask_uploads == 1
    np.testing.assert_array_equal(world.backend.last_mask, edited)
    world.point((c[0], c[1] - 1, c[2]))
    assert world.backend.mask_uploads == 1

    # Switching segments makes the other one the starting mask, once; and back again.
    second = world.add_segment("second", cube(np.array(c) - 3, np.array(c) + 3))
    world.select(second)
    world.point(c)
    world.point((c[0] + 1, c[1], c[2]))
    assert world.backend.mask_uploads == 2
    world.select(first)
    world.point(c)
    assert world.backend.mask_uploads == 3

    # A changed image is sent again (and the segment with it).
    slicer.util.arrayFromVolume(world.volume)[0, 0, 0] += 1
    slicer.util.arrayFromVolumeModified(world.volume)
    world.point(c)
    assert world.backend.calls["set_image"] == 2
    assert world.backend.mask_uploads == 4


def test_sync_uploads_ahead_of_the_first_prompt(world):
    world.pipeline.sync()
    world.pipeline.sync()
    assert world.backend.calls["set_image"] == 1
    assert world.backend.calls["prompt"] == 0
    world.point(centre())
    assert world.backend.calls["set_image"] == 1
    assert world.backend.calls["prompt"] == 1


def snapshot(world) -> dict:
    """Every segment's internal labelmap, bit for bit, with its extent and label value."""
    segmentation = world.segmentation.GetSegmentation()
    out = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        labelmap = segment.GetRepresentation("Binary labelmap")
        scalars = labelmap.GetPointData().GetScalars() if labelmap is not None else None
        data = vtk.util.numpy_support.vtk_to_numpy(scalars).copy() if scalars is not None else None
        out[segmentation.GetNthSegmentID(index)] = (labelmap.GetExtent(), segment.GetLabelValue(), data)
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key][:2] == b[key][:2]
        np.testing.assert_array_equal(a[key][2], b[key][2])


@pytest.mark.parametrize("failing_call", ["prompt", "set_initial_mask", "set_image"])
def test_a_backend_that_fails_mid_prompt_leaves_every_segment_bit_identical(world, failing_call):
    c = np.array(centre())
    world.add_segment("other", cube(c - 10, c - 2))
    target = world.add_segment("target", cube(c - 2, c + 3))
    world.select(target)
    world.editor.SetOverwriteMode(Editor.OverwriteAllSegments)
    before = snapshot(world)
    world.backend.fail_on = {failing_call}
    with pytest.raises(BackendUnavailableError, match="failed on purpose: the server went away. Try again."):
        world.point(tuple(c))
    assert_same(snapshot(world), before)
    # The next prompt works and sends only what the backend is missing.
    world.backend.fail_on = set()
    images = world.backend.calls["set_image"]
    assert world.point(tuple(c)).written
    assert world.backend.calls["set_image"] == images + (1 if failing_call == "set_image" else 0)
    np.testing.assert_array_equal(world.mask(target), world.backend.get_mask())


def test_a_result_for_a_segment_edited_meanwhile_is_not_written(world):
    c = centre()
    segment_id = world.point(c).segment_id
    node = world.fiducial((c[0] + 1, c[1], c[2]))
    prepared = world.pipeline.prepare(lambda g: point_prompt(control_points_world(node)[0], g))
    result = world.pipeline.run(prepared)  # the model works ...
    world.paint(segment_id, cube((0, 0, 0), (4, 4, 4)), slicer.vtkSlicerSegmentEditorLogic.ModificationModeAdd)
    edited = world.mask(segment_id)
    outcome = world.pipeline.apply(prepared, result)  # ... while the user painted
    assert not outcome.written and "changed while" in outcome.message
    np.testing.assert_array_equal(world.mask(segment_id), edited)
    uploads = world.backend.mask_uploads
    world.point(c)
    assert world.backend.mask_uploads == uploads + 1


def test_undo_reverts_the_last_prompt_and_segment_editor_undo_works_on_results(world):
    c = centre()
    segment_id = world.point(c).segment_id
    after_first = world.mask(segment_id)
    world.point((c[0] + 3, c[1] + 3, c[2]))
    assert not np.array_equal(world.mask(segment_id), after_first)
    world.pipeline.submit(UNDO)
    np.testing.assert_array_equal(world.mask(segment_id), after_first)
    np.testing.assert_array_equal(world.backend.get_mask(), after_first)

    # The Segment Editor's own undo restores the state before the model's undo was written.
    world.point((c[0] + 3, c[1] + 3, c[2]))
    after_second = world.mask(segment_id)
    world.pipeline.writer.undo()
    np.testing.assert_array_equal(world.mask(segment_id), after_first)
    # That was an edit the backend did not see: the model cannot undo now, and the next prompt re-sends.
    with pytest.raises(PromptError, match="Segment Editor's Undo"):
        world.pipeline.submit(UNDO)
    uploads = world.backend.mask_uploads
    world.point(c)
    assert world.backend.mask_uploads == uploads + 1
    assert not np.array_equal(after_second, np.zeros(SHAPE))


def test_module_undo_and_redo_restore_every_segment_an_overwrite_changed(world):
    world.editor.SetOverwriteMode(Editor.OverwriteAllSegments)
    c = np.array(centre())
    other = world.add_segment("other", cube(c - 3, c + 4))
    target = world.add_segment("target")
    world.select(target)
    states = [(world.mask(target), world.mask(other))]
    for kji in (c, (c[0] + 3, c[1] + 3, c[2])):
        world.point(tuple(kji))
        states.append((world.mask(target), world.mask(other)))
    assert (states[1][1] < states[0][1]).any()  # the prompt took voxels from the other segment
    assert not np.array_equal(states[2][0], states[1][0])

    def check(state) -> None:
        np.testing.assert_array_equal(world.mask(target), state[0])
        np.testing.assert_array_equal(world.mask(other), state[1])
        np.testing.assert_array_equal(world.backend.get_mask(), state[0])  # the model agrees

    for expected in (states[1], states[0]):
        assert world.pipeline.submit(UNDO).message == "Undone."
        check(expected)
    with pytest.raises(PromptError, match="no prompt to undo"):
        world.pipeline.submit(UNDO)
    for expected in (states[1], states[2]):
        assert world.pipeline.submit(REDO).message == "Redone."
        check(expected)
    with pytest.raises(PromptError, match="no prompt to redo"):
        world.pipeline.submit(REDO)
    uploads = world.backend.mask_uploads
    world.pipeline.submit(UNDO)
    world.point((c[0], c[1] - 3, c[2]))  # a new prompt drops the redo
    assert not world.pipeline.can_redo and world.backend.undo_state().redo == 0
    assert world.backend.mask_uploads == uploads  # model and segments stayed in step: nothing re-sent


def test_module_undo_after_an_edit_of_another_segment_keeps_that_edit(world):
    other, target = world.add_segment("other"), world.add_segment("target")
    world.segmentation.GetSegmentation().SeparateSegmentLabelmap(other)  # its edits leave the target's alone
    world.select(target)
    c = np.array(centre())
    world.point(tuple(c))
    after_first = world.mask(target)
    world.point((c[0] + 3, c[1] + 3, c[2]))
    world.paint(other, cube((0, 0, 0), (5, 5, 5)), slicer.vtkSlicerSegmentEditorLogic.ModificationModeAdd)
    world.pipeline.submit(UNDO)  # the Segment Editor's Undo would take the painting back: the model's region is written
    np.testing.assert_array_equal(world.mask(target), after_first)
    np.testing.assert_array_equal(world.mask(other), cube((0, 0, 0), (5, 5, 5)))
    world.pipeline.submit(REDO)
    np.testing.assert_array_equal(world.mask(target), world.backend.get_mask())
    np.testing.assert_array_equal(world.mask(other), cube((0, 0, 0), (5, 5, 5)))


def test_module_undo_after_an_edit_in_the_same_labelmap_says_to_use_the_editor(world):
    c = np.array(centre())
    target = world.point(tuple(c)).segment_id
    world.point((c[0] + 3, c[1] + 3, c[2]))
    other = world.add_segment("other", cube((0, 0, 0), (5, 5, 5)))  # shares the target's labelmap
    world.select(target)
    before = world.mask(target)
    with pytest.raises(PromptError, match="Segment Editor's Undo"):
        world.pipeline.submit(UNDO)
    np.testing.assert_array_equal(world.mask(target), before)
    np.testing.assert_array_equal(world.mask(other), cube((0, 0, 0), (5, 5, 5)))


def test_reset_next_segment_and_no_selection(world):
    world.editor.SetSelectedSegmentID(None)
    c = centre()
    first = world.point(c).segment_id  # no segment selected: one is created and selected
    assert world.editor.GetSelectedSegmentID() == first
    world.pipeline.reset_segment()
    assert not world.mask(first).any()
    world.point(c)
    assert world.backend.calls["reset"] == 1  # the emptied segment restarted the model's object
    second = world.pipeline.new_segment()
    assert second != first and world.editor.GetSelectedSegmentID() == second
    world.point(c)
    assert world.backend.calls["reset"] == 2
    assert world.mask(first).any() and world.mask(second).any()


def test_a_backend_switched_mid_prompt_gets_everything_again(world, real_backend):
    c = centre()
    segment_id = world.point(c).segment_id
    node = world.fiducial((c[0] + 1, c[1], c[2]))
    prepared = world.pipeline.prepare(lambda g: point_prompt(control_points_world(node)[0], g))
    result = world.pipeline.run(prepared)
    replacement = CountingBackend(real_backend)
    world.pipeline.backend = replacement  # e.g. the user changed the configuration meanwhile
    assert world.pipeline.apply(prepared, result).written  # the result that arrived is still the user's
    world.point(c)
    assert replacement.calls["set_image"] == 1
    assert replacement.mask_uploads == 1
    np.testing.assert_array_equal(world.mask(segment_id), replacement.get_mask())


def test_without_a_backend_a_prompt_says_what_to_do(world):
    world.pipeline.backend = None
    with pytest.raises(PromptError, match="Configuration tab"):
        world.point(centre())


def test_scene_problems_are_reported_before_anything_is_sent(world):
    world.editor.SetAndObserveSourceVolumeNode(None)
    with pytest.raises(PromptError, match="source volume"):
        world.point(centre())
    assert sum(world.backend.calls.values()) == 0


def editor_history(world, states: int = 20) -> UndoHooks:
    """The embedded Segment Editor's undo history as the widget passes it: its own logic, ``states`` deep."""
    logic = slicer.vtkSlicerSegmentEditorLogic()
    logic.SetMRMLScene(world.s.scene)
    logic.SetSegmentEditorNode(world.editor)
    logic.SetMaximumNumberOfUndoStates(states)
    world.editor_logic = logic
    return UndoHooks(logic.SaveStateForUndo, logic.Undo, logic.Redo)


def test_undo_and_redo_go_as_deep_as_the_model_past_the_editors_history(world):
    world.pipeline = PromptPipeline(world.s.scene, world.backend, world.editor, world.s.app_logic,
                                    editor_history(world))
    c = np.array(centre())
    offsets = [(dk, dj, di) for dk in (-4, 0, 4) for dj in (-4, 0, 4) for di in (-6, -2, 2, 6)][:DEPTH]
    segment_id = world.point(tuple(c)).segment_id
    states = [world.mask(segment_id)]
    for offset in offsets[1:]:
        world.point(tuple(c + offset))
        states.append(world.mask(segment_id))
    assert len({s.tobytes() for s in states}) > 20  # more distinct steps than the editor keeps
    for expected in reversed(states[:-1]):
        assert world.pipeline.submit(UNDO).message == "Undone."
        np.testing.assert_array_equal(world.mask(segment_id), expected)
        np.testing.assert_array_equal(world.backend.get_mask(), expected)
    for expected in states[1:]:
        assert world.pipeline.submit(REDO).message == "Redone."
        np.testing.assert_array_equal(world.mask(segment_id), expected)
        np.testing.assert_array_equal(world.backend.get_mask(), expected)
    assert world.backend.mask_uploads == 0  # model and segment stayed in step throughout


def editor_logics(pipeline) -> list:
    """Every Segment Editor logic the pipeline keeps (each may hold an undo history)."""
    return [v for v in vars(pipeline.writer).values() if isinstance(v, slicer.vtkSlicerSegmentEditorLogic)]


@pytest.mark.parametrize("hooks", [False, True], ids=["own history", "host's history"])
def test_no_undo_state_is_kept_that_no_button_restores(world, hooks):
    if hooks:
        world.pipeline = PromptPipeline(world.s.scene, world.backend, world.editor, world.s.app_logic,
                                        editor_history(world))
    c = centre()
    for _ in range(3):  # "Next segment" three times, a prompt in each
        world.pipeline.new_segment()
        world.point(c)
    world.pipeline.submit(UNDO)
    if hooks:  # the host's Undo button reaches its own states; the pipeline keeps none of its own
        assert world.editor_logic.CanUndo()
        assert not any(logic.CanUndo() or logic.CanRedo() for logic in editor_logics(world.pipeline))
    else:  # only the module's Undo reads this history: after undoing the one prompt, nothing is left to undo
        assert not any(logic.CanUndo() for logic in editor_logics(world.pipeline))


class FailingSecondEdit:
    """The writer's Segment Editor logic, whose second edit of a write fails (e.g. out of memory)."""

    def __init__(self, logic) -> None:
        self.logic, self.edits = logic, 0

    def __getattr__(self, name):
        return getattr(self.logic, name)

    def ModifySegmentByLabelmap(self, *args):  # noqa: N802 (VTK's name)
        self.edits += 1
        if self.edits == 2:
            raise MemoryError("no memory left for the labelmap")
        return self.logic.ModifySegmentByLabelmap(*args)


@pytest.mark.parametrize("hooks", [False, True], ids=["own history", "host's history"])
def test_a_write_that_fails_halfway_restores_every_segment_and_says_so(world, hooks):
    if hooks:
        world.pipeline = PromptPipeline(world.s.scene, world.backend, world.editor, world.s.app_logic,
                                        editor_history(world))
    world.editor.SetOverwriteMode(Editor.OverwriteAllSegments)
    c = np.array(centre())
    world.add_segment("other", cube(c - 10, c - 2))
    target = world.add_segment("target", cube(c - 4, c + 2))
    before = snapshot(world)
    writer = world.pipeline.writer
    writer.logic = FailingSecondEdit(writer.logic)
    result = cube(c - 6, c + 4)  # adds voxels, ...
    result[tuple(slice(k, k + 2) for k in c - 4)] = 0  # ... and removes some
    with pytest.raises(WriteError, match="restored as they were") as failed:
        writer.write(world.segmentation, target, world.index_to_seg(), full_box(SHAPE), result)
    assert writer.logic.edits == 2  # the failure came after the first edit was written
    assert_same(snapshot(world), before)
    assert error_text(failed.value) == str(failed.value)  # not "the segment was not changed" on top of it
