"""Test helpers for the Slicer module: a slicer-core MRML scene wired like Slicer's (application logic +
module logics), volume helpers, and backend wrappers that count uploads, fail on purpose or answer instantly.

Also puts the module folder on sys.path so tests import ``SlicerNNInteractiveLib`` as Slicer does.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODULE_DIR = Path(__file__).resolve().parents[1] / "SlicerNNInteractive"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

import slicer  # noqa: E402
import vtk  # noqa: E402
from slicer import util  # noqa: E402
from vtk.util import numpy_support  # noqa: E402

from nninteractive_slicer.errors import BackendUnavailableError  # noqa: E402
from nninteractive_slicer.interface import Backend, Capabilities, Prompt, PromptResult, UndoState  # noqa: E402
from SlicerNNInteractiveLib.segment_writer import UndoHooks  # noqa: E402

# Name -> class of the module logics the Segment Editor logic needs under slicer-core (facts.md).
MODULE_LOGICS = {
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "Markups": "vtkSlicerMarkupsLogic",
    "Volumes": "vtkSlicerVolumesLogic",
}


@dataclass
class SlicerScene:
    scene: slicer.vtkMRMLScene
    app_logic: slicer.vtkSlicerApplicationLogic
    logics: dict

    def volume(self, array: np.ndarray, ijk_to_ras: np.ndarray | None = None, name: str = "Volume"):
        """A scalar volume holding ``array`` (indexed k, j, i) with the given 4x4 IJK-to-RAS."""
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        image = vtk.vtkImageData()
        image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
        image.AllocateScalars(numpy_support.get_vtk_array_type(array.dtype), 1)
        node.SetAndObserveImageData(image)
        util.arrayFromVolume(node)[:] = array
        util.arrayFromVolumeModified(node)
        if ijk_to_ras is not None:
            node.SetIJKToRASMatrix(util.vtkMatrixFromArray(ijk_to_ras))
        node.CreateDefaultDisplayNodes()
        return node

    def linear_transform(self, matrix: np.ndarray, name: str = "Transform"):
        node = self.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
        node.SetMatrixTransformToParent(util.vtkMatrixFromArray(matrix))
        return node

    def segmentation(self, volume_node, name: str = "Segmentation"):
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        return node

    def editor_node(self, volume_node, segmentation_node):
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        node.SetAndObserveSegmentationNode(segmentation_node)
        node.SetAndObserveSourceVolumeNode(volume_node)
        return node


def make_scene() -> SlicerScene:
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    logics = {}
    for name, class_name in MODULE_LOGICS.items():
        logic = getattr(slicer, class_name)()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(name, logic)
        logics[name] = logic
    return SlicerScene(scene, app_logic, logics)


def oblique_lps_matrix(spacing=(0.7, 1.1, 2.5), origin=(12.0, -30.0, 45.0), angles=(0.3, -0.2, 0.5)) -> np.ndarray:
    """An IJK-to-RAS with LPS-like flips, rotated direction cosines and anisotropic spacing."""
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    lps = np.diag([-1.0, -1.0, 1.0])
    matrix = np.eye(4)
    matrix[:3, :3] = lps @ rz @ ry @ rx @ np.diag(spacing)
    matrix[:3, 3] = origin
    return matrix


def rigid_transform(angle: float = 0.4, shift=(5.0, -7.0, 3.0)) -> np.ndarray:
    """A rotation about an oblique axis plus a shift: a typical registration result."""
    axis = np.array([1.0, 2.0, 0.5])
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    matrix = np.eye(4)
    matrix[:3, :3] = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    matrix[:3, 3] = shift
    return matrix


class CountingBackend(Backend):
    """Delegates to a real backend, counting uploads; ``fail_on`` names calls that raise instead."""

    kind = "counting"

    def __init__(self, inner: Backend) -> None:
        super().__init__()
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.last_mask: np.ndarray | None = None
        self.fail_on: set[str] = set()

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def _check(self, call: str) -> None:
        if call in self.fail_on:
            raise BackendUnavailableError(f"{call} failed on purpose: the server went away. Try again.")
        self.calls[call] += 1

    def _set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        self._check("set_image")
        self.inner.set_image(image, spacing)

    def _set_initial_mask(self, mask: np.ndarray) -> None:
        self._check("set_initial_mask")
        self.last_mask = mask.copy()
        self.inner.set_initial_mask(mask)

    def _reset(self) -> None:
        self._check("reset")
        self.last_mask = None
        self.inner.reset()

    def _prompt(self, prompt: Prompt) -> PromptResult:
        self._check("prompt")
        return self.inner.prompt(prompt)

    def _undo(self, steps: int) -> PromptResult:
        self._check("undo")
        return self.inner.undo(steps)

    def _redo(self, steps: int) -> PromptResult:
        self._check("redo")
        return self.inner.redo(steps)

    def _undo_state(self) -> UndoState:
        return self.inner.undo_state()

    def _get_mask(self) -> np.ndarray:
        return self.inner.get_mask()

    def _close(self) -> None:
        """The inner backend is shared between tests and closed by its fixture."""

    @property
    def mask_uploads(self) -> int:
        """How often the starting mask was (re)sent, an empty one included."""
        return self.calls["set_initial_mask"] + self.calls["reset"]


class InstantBackend(Backend):
    """Answers every point with a ball of voxels around it, at once: times the client side alone."""

    kind = "instant"

    def __init__(self, radius: int = 14) -> None:
        super().__init__()
        self.radius = radius
        self.count = 0

    def capabilities(self) -> Capabilities:
        return Capabilities("instant", "ball", "none", "cpu")

    def _set_image(self, image: np.ndarray, spacing: tuple[float, float, float]) -> None:
        pass

    def _set_initial_mask(self, mask: np.ndarray) -> None:
        pass

    def _prompt(self, prompt: Prompt) -> PromptResult:
        self.count += 1
        radius = self.radius + self.count % 4  # a slightly different answer every time
        centre = np.array(prompt.coord)  # type: ignore[union-attr]
        lo = np.maximum(centre - radius - 2, 0)
        hi = np.minimum(centre + radius + 3, self.image_shape)
        grid = np.indices(hi - lo) + (lo - centre)[:, None, None, None]
        patch = ((grid**2).sum(axis=0) <= radius**2).astype(np.uint8)
        return PromptResult(tuple(zip(lo.tolist(), hi.tolist())), patch)  # type: ignore[arg-type]

    def _undo(self, steps: int) -> PromptResult:
        return PromptResult()

    def _undo_state(self) -> UndoState:
        return UndoState()

    def _reset(self) -> None:
        pass

    def _get_mask(self) -> np.ndarray:
        raise NotImplementedError

    def _close(self) -> None:
        pass


def counted(save) -> UndoHooks | None:
    """Undo hooks around a host's ``save`` (counting or failing); a test using them never undoes."""
    if save is None:
        return None

    def never() -> None:
        raise AssertionError("this test does not undo")

    return UndoHooks(save, never, never)
