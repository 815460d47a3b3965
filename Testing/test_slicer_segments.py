"""The Lib on segmentations that are not plain labelmaps on the volume's grid, and on prompts that change nothing.

On slicer-core with the local backend and the ``rule`` model (it segments the bright cube of the image). A
segmentation on another grid (oversampled, shifted) or in a representation that cannot become a labelmap is
refused before anything is sent, the user's segment left bit for bit as it was; one that can be made fit is.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from slicer_scene import CountingBackend, counted, make_scene
from synthetic import CUBE_BOX, CUBE_CENTRE, CUBE_SHAPE, bright_box_image
from vtk.util import numpy_support

from nninteractive_slicer.backends.local import LocalBackend
from nninteractive_slicer.interface import Point
from SlicerNNInteractiveLib import PromptError, PromptPipeline, VolumeGeometry
from SlicerNNInteractiveLib.segments import BINARY_LABELMAP, full_box, grid_image, index_to_segmentation, read_mask

CLOSED_SURFACE = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
GEOMETRY = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
OVERSAMPLED = np.diag([0.5, 0.5, 0.5, 1.0])  # twice as many voxels per axis
SHIFTED = np.array([[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])  # half a voxel along k


@pytest.fixture(scope="module")
def rule_local(rule_model_dir):
    with LocalBackend(model_dir=rule_model_dir, device="cpu", torch_threads=2) as backend:
        yield backend


class Scene:
    """A volume with a bright cube, a segmentation, a Segment Editor node and a session on the rule model."""

    def __init__(self, backend, save_undo=None) -> None:
        image, self.cube = bright_box_image(CUBE_SHAPE, CUBE_BOX)
        self.s = make_scene()
        self.volume = self.s.volume(image)
        self.segmentation = self.s.segmentation(self.volume)
        self.editor = self.s.editor_node(self.volume, self.segmentation)
        self.backend = CountingBackend(backend)
        self.pipeline = PromptPipeline(self.s.scene, self.backend, self.editor, self.s.app_logic,
                                       counted(save_undo))

    @property
    def index_to_seg(self) -> np.ndarray:
        return index_to_segmentation(VolumeGeometry.from_volume_node(self.volume), self.segmentation)

    def mask(self, segment_id: str) -> np.ndarray:
        return read_mask(self.segmentation, segment_id, self.index_to_seg, full_box(CUBE_SHAPE))

    def on_grid(self, grid: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Index-to-segmentation matrix and shape of a grid ``grid`` (4x4, in volume voxels) over the volume."""
        scale = np.rint(1 / np.diag(grid)[:3]).astype(int)
        return self.index_to_seg @ grid, tuple(int(n) for n in np.array(CUBE_SHAPE) * scale)

    def use_reference_grid(self, grid: np.ndarray) -> None:
        index_to_seg, shape = self.on_grid(grid)
        serialized = slicer.vtkSegmentationConverter.SerializeImageGeometry(grid_image(index_to_seg, full_box(shape)))
        self.segmentation.GetSegmentation().SetConversionParameter(GEOMETRY, serialized)

    def add_labelmap_segment(self, grid: np.ndarray, box) -> str:
        """A segment whose labelmap lives on ``grid``, filled in ``box`` (in that grid's voxels)."""
        index_to_seg, shape = self.on_grid(grid)
        voxels = np.zeros(shape, np.uint8)
        voxels[tuple(slice(lo, hi) for lo, hi in box)] = 1
        segment = slicer.vtkSegment()
        segment.SetName("user's")
        segment.AddRepresentation(BINARY_LABELMAP, grid_image(index_to_seg, full_box(shape), voxels))
        self.segmentation.GetSegmentation().AddSegment(segment, "user")
        self.editor.SetSelectedSegmentID("user")
        return "user"

    def snapshot(self) -> list:
        """Every segment's representations, voxel for voxel, and the segmentation's settings."""
        segmentation = self.segmentation.GetSegmentation()
        state: list = [segmentation.GetSourceRepresentationName(), segmentation.GetConversionParameter(GEOMETRY)]
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(index)
            names: list[str] = []
            segment.GetContainedRepresentationNames(names)
            for name in sorted(names):
                data = segment.GetRepresentation(name)
                arrays = data.GetPointData().GetScalars() if name == BINARY_LABELMAP else data.GetPoints().GetData()
                state.append((name, str(data.GetBounds()), numpy_support.vtk_to_numpy(arrays).tobytes()))
        return state


@pytest.mark.parametrize("grid", [OVERSAMPLED, SHIFTED], ids=["oversampled", "shifted"])
def test_a_segment_on_another_grid_is_refused_and_left_as_it_was(rule_local, grid):
    scene = Scene(rule_local)
    scene.use_reference_grid(grid)
    scene.add_labelmap_segment(grid, ((30, 50), (30, 50), (30, 50)))
    before = scene.snapshot()
    with pytest.raises(PromptError, match="uses a different voxel grid than the volume.*Specify geometry"):
        scene.pipeline.submit(Point(CUBE_CENTRE))
    assert scene.snapshot() == before
    assert sum(scene.backend.calls.values()) == 0


@pytest.mark.parametrize("grid", [OVERSAMPLED, SHIFTED], ids=["oversampled", "shifted"])
def test_an_empty_segmentation_on_another_grid_moves_to_the_volumes(rule_local, grid):
    scene = Scene(rule_local)
    scene.use_reference_grid(grid)
    outcome = scene.pipeline.submit(Point(CUBE_CENTRE))
    assert outcome.written, outcome.message
    np.testing.assert_array_equal(scene.mask(outcome.segment_id), scene.cube)


def test_a_labelmap_on_another_grid_is_read_on_the_volumes(rule_local):
    """A segment whose own labelmap is oversampled, under a reference geometry that matches the volume."""
    scene = Scene(rule_local)
    segment_id = scene.add_labelmap_segment(OVERSAMPLED, ((20, 40), (20, 40), (20, 40)))
    expected = np.zeros(CUBE_SHAPE, np.uint8)
    expected[10:20, 10:20, 10:20] = 1
    np.testing.assert_array_equal(scene.mask(segment_id), expected)


def test_a_closed_surface_segmentation_becomes_a_labelmap_and_is_sent_as_the_start(rule_local):
    import vtk

    scene = Scene(rule_local)
    segmentation = scene.segmentation.GetSegmentation()
    segmentation.SetSourceRepresentationName(CLOSED_SURFACE)
    sphere = vtk.vtkSphereSource()
    sphere.SetCenter(*(scene.index_to_seg @ np.r_[np.array(CUBE_CENTRE, float), 1.0])[:3])
    sphere.SetRadius(5.0)
    sphere.Update()
    segment = slicer.vtkSegment()
    segment.AddRepresentation(CLOSED_SURFACE, sphere.GetOutput())
    segmentation.AddSegment(segment, "surface")
    scene.editor.SetSelectedSegmentID("surface")
    outcome = scene.pipeline.submit(Point(CUBE_CENTRE))
    assert segmentation.GetSourceRepresentationName() == BINARY_LABELMAP
    assert scene.backend.calls["set_initial_mask"] == 1 and scene.backend.last_mask.any()
    assert outcome.written, outcome.message
    np.testing.assert_array_equal(scene.mask("surface"), scene.cube)  # the sphere lies inside the cube


def test_a_representation_that_cannot_become_a_labelmap_is_refused_and_left_as_it_was(rule_local):
    import vtk

    scene = Scene(rule_local)
    segmentation = scene.segmentation.GetSegmentation()
    segmentation.SetSourceRepresentationName("Planar contour")  # no converter to a labelmap in slicer-core
    contour = vtk.vtkSphereSource()
    contour.Update()
    segment = slicer.vtkSegment()
    segment.AddRepresentation("Planar contour", contour.GetOutput())
    segmentation.AddSegment(segment, "contour")
    scene.editor.SetSelectedSegmentID("contour")
    before = scene.snapshot()
    with pytest.raises(PromptError, match="cannot be converted to a binary labelmap"):
        scene.pipeline.submit(Point(CUBE_CENTRE))
    assert scene.snapshot() == before
    assert sum(scene.backend.calls.values()) == 0


def test_a_prompt_that_changes_nothing_writes_nothing_and_saves_no_undo_state(rule_local):
    saved: list[int] = []
    scene = Scene(rule_local, save_undo=lambda: saved.append(1))
    first = scene.pipeline.submit(Point(CUBE_CENTRE))
    assert first.written and len(saved) == 1
    segment_id = first.segment_id
    before = scene.snapshot()
    again = scene.pipeline.submit(Point(CUBE_CENTRE))  # the cube is segmented already
    assert not again.written and again.message == "The prompt changed nothing."
    assert scene.snapshot() == before and len(saved) == 1
    # A result the segment already holds (as after a re-sent segment) is not written either.
    box = CUBE_BOX
    written = scene.pipeline.writer.write(scene.segmentation, segment_id, scene.index_to_seg, box,
                                         scene.cube[tuple(slice(lo, hi) for lo, hi in box)])
    assert not written.changed and written.complete
    assert scene.snapshot() == before and len(saved) == 1
