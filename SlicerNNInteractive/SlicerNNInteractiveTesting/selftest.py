"""Drives the real widget inside Slicer with the tiny synthetic model on the CPU (needs torch + nnInteractive).

It waits by processing Qt events only, never by sleeping: a sleep releases the GIL and would hide a
poll that starves the worker thread, as Slicer's own event loop does not release it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from SlicerNNInteractiveLib import settings
from SlicerNNInteractiveLib.automatic import cuda_devices
from SlicerNNInteractiveLib.backends import BackendConfig, missing_requirements
from SlicerNNInteractiveLib.views import slice_to_ras

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens there


class SlicerNNInteractiveTest(ScriptedLoadableModuleTest):
    """Reload and Test calls runTest(); the factory ctest (slicer.testing.runUnitTest) loads the class with
    unittest's loader, which calls every test_* method with no argument: both work, and neither keeps the
    user's saved settings changed."""

    _model_dir: Path | None = None

    def setUp(self) -> None:
        if missing_requirements("local"):
            self.skipTest("the local backend (torch + nnInteractive) is not installed")
        import qt  # only inside Slicer: the factory ctest's loader imports this file anywhere

        slicer.mrmlScene.Clear()
        saved = settings.snapshot(qt.QSettings())
        self.addCleanup(lambda: self.restore_settings(saved))

    def restore_settings(self, saved: dict) -> None:
        import qt

        settings.restore(qt.QSettings(), saved)
        slicer.modules.slicernninteractive.widgetRepresentation().self().loadSettings()
        settings.restore(qt.QSettings(), saved)  # loading them into the fields saves as it goes

    def runTest(self) -> None:
        if missing_requirements("local"):
            self.delayDisplay("Skipped: the local backend (torch + nnInteractive) is not installed.")
            return
        for name in sorted(n for n in dir(self) if n.startswith("test_")):
            self.setUp()
            try:
                getattr(self, name)()
            finally:
                self.doCleanups()

    @classmethod
    def model_dir(cls) -> Path:
        """The tiny synthetic model, written once per Slicer session."""
        if cls._model_dir is None:
            from nninteractive_slicer.devtools.synthetic_model import write_model

            cls._model_dir = write_model(Path(tempfile.mkdtemp()) / "tiny", "tiny", seed=0)
        return cls._model_dir

    # -- helpers ------------------------------------------------------------------------------------
    def widget(self):
        slicer.util.selectModule("SlicerNNInteractive")
        return slicer.modules.slicernninteractive.widgetRepresentation().self()

    def wait(self, widget, seconds: float = 300.0) -> None:
        deadline = time.monotonic() + seconds
        while widget.logic.busy or widget.timer.isActive():
            self.assertLess(time.monotonic(), deadline, "the module did not finish in time")
            slicer.app.processEvents()

    def volume(self, oblique: bool):
        grid = np.indices((40, 64, 64)).astype(np.float32)
        blob = ((grid[0] - 20) / 9) ** 2 + ((grid[1] - 30) / 12) ** 2 + ((grid[2] - 30) / 12) ** 2 < 1
        image = 300.0 + 600.0 * blob + np.random.default_rng(0).normal(0, 20, blob.shape)
        volume = slicer.util.addVolumeFromArray(image.astype(np.float32), name="nnInteractive test")
        if oblique:  # rotated 30 degrees about S, as many MRI series are
            angle = np.radians(30)
            matrix = np.eye(4)
            matrix[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
            volume.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(matrix))
        return volume

    def world(self, volume, kji) -> np.ndarray:
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        return np.array(matrix.MultiplyPoint((kji[2], kji[1], kji[0], 1.0))[:3])

    def segment(self, widget, volume) -> np.ndarray:
        node = widget.editorNode.GetSegmentationNode()
        return slicer.util.arrayFromSegmentBinaryLabelmap(node, widget.editorNode.GetSelectedSegmentID(), volume)

    def choose(self, widget, kind: str, url: str = UNREACHABLE, model: str = "", device: str = "cpu") -> None:
        widget.ui.backendCombo.setCurrentIndex(widget.ui.backendCombo.findData(kind))
        widget.ui.serverUrlEdit.text, widget.ui.modelEdit.text = url, model
        widget.addDevice(device)
        widget.ui.deviceCombo.setCurrentText(device)
        widget.onConfigEdited()

    # -- tests ------------------------------------------------------------------------------------
    def test_automatic_choice_and_fallback(self) -> None:
        model_dir = self.model_dir()
        widget = self.widget()
        volume = self.volume(oblique=False)
        widget.setVolume(volume)
        centre = self.world(volume, (20, 30, 30))

        self.delayDisplay("Automatic: the GPU here, or the configured server, and it says why")
        self.choose(widget, "automatic", model=str(model_dir), device="auto")
        widget.ui.pbPoint.click()
        widget.markups["point"].AddControlPointWorld(vtk.vtkVector3d(*centre))
        self.wait(widget)
        if cuda_devices():
            self.assertEqual(type(widget.logic.backend).__name__, "LocalBackend")
            self.assertIn("Automatic: runs here", widget.ui.connectionLabel.text)
        else:
            self.assertIsNone(widget.logic.backend)
            self.assertIn("Automatic: no usable CUDA GPU here", widget.ui.connectionLabel.text)
        widget.setTool(None)

        self.delayDisplay("A local model that cannot load: the server is offered, the segment stays")
        questions = []
        widget.ask = lambda question: questions.append(question) or True  # the user says yes
        self.choose(widget, "local", model=tempfile.mkdtemp())  # an empty folder is no model
        before = widget.editorNode.GetSegmentationNode().GetSegmentation().GetNumberOfSegments()
        widget.ui.pbPoint.click()
        widget.markups["point"].AddControlPointWorld(vtk.vtkVector3d(*centre))
        self.wait(widget)
        for _ in range(5):  # the offer opens from its own timer callback
            slicer.app.processEvents()
        self.wait(widget)
        self.assertEqual(len(questions), 1, widget.ui.statusLabel.text)
        self.assertIn("Continue on the server", questions[0])
        self.assertEqual(widget.logic.choice.kind, "slicer_server")  # continued there: unreachable, and said so
        self.assertIn("not changed", widget.ui.statusLabel.text)
        after = widget.editorNode.GetSegmentationNode().GetSegmentation().GetNumberOfSegments()
        self.assertLessEqual(after - before, 1)  # at most an empty segment to write into
        del widget.ask
        widget.setTool(None)

    def test_prompts_boxes_and_an_oblique_volume(self) -> None:
        from nninteractive_slicer.backends.local import LocalBackend

        model_dir = self.model_dir()
        widget = self.widget()
        self.choose(widget, "local", model=str(model_dir))
        backend = LocalBackend(model_dir=model_dir, device="cpu")
        widget.logic.use_backend(backend, BackendConfig("local", device="cpu", model=str(model_dir)))
        volume = self.volume(oblique=True)
        widget.setVolume(volume)
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        centre = self.world(volume, (20, 30, 30))

        self.delayDisplay("A point")
        widget.ui.pbPoint.click()
        widget.markups["point"].AddControlPointWorld(vtk.vtkVector3d(*centre))
        self.wait(widget)
        np.testing.assert_array_equal(self.segment(widget, volume), backend.get_mask())
        self.assertTrue(self.segment(widget, volume).any(), widget.ui.statusLabel.text)

        self.delayDisplay("A box abandoned after one corner, then a box on the oblique volume: refused, align offered")
        red = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        widget.ui.pbBBox.click()
        widget.boxes.roi.AddControlPointWorld(vtk.vtkVector3d(*centre))
        slicer.app.applicationLogic().GetInteractionNode().SwitchToViewTransformMode()  # as Esc
        self.assertIsNone(widget.active_tool)

        def box_on_red() -> None:
            slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, *centre)
            plane = slice_to_ras(red)
            u, v = plane[:3, 0], plane[:3, 1]
            if widget.active_tool != "bbox":
                widget.ui.pbBBox.click()
            for corner in (centre - 8 * u - 8 * v, centre + 8 * u + 8 * v):
                widget.boxes.roi.AddControlPointWorld(vtk.vtkVector3d(*corner))
            self.wait(widget)

        box_on_red()
        self.assertTrue(widget.ui.pbAlignViews.visible, widget.ui.statusLabel.text)
        widget.ui.pbAlignViews.click()
        before = self.segment(widget, volume).copy()
        box_on_red()
        self.assertEqual(widget.active_tool, "bbox")  # the tool stays for the next box
        self.assertNotIn("not changed", widget.ui.statusLabel.text)
        np.testing.assert_array_equal(self.segment(widget, volume), backend.get_mask())
        self.assertFalse(np.array_equal(before, self.segment(widget, volume)))

        self.delayDisplay("A lasso on the aligned view, undo, reset and next segment")
        plane = slice_to_ras(red)
        ring = [centre + 6 * (np.cos(a) * plane[:3, 0] + np.sin(a) * plane[:3, 1]) for a in np.linspace(0, 6.2, 32)]
        widget.ui.pbLasso.click()
        widget.onStrokeFinished(np.array(ring), plane[:3, 2])
        self.wait(widget)
        np.testing.assert_array_equal(self.segment(widget, volume), backend.get_mask())
        before = self.segment(widget, volume).copy()
        widget.setPositive(False)
        widget.markups["point"].AddControlPointWorld(vtk.vtkVector3d(*self.world(volume, (20, 30, 36))))
        self.wait(widget)
        widget.ui.pbUndo.click()
        self.wait(widget)
        np.testing.assert_array_equal(self.segment(widget, volume), before)
        first = widget.editorNode.GetSelectedSegmentID()
        widget.ui.pbResetSegment.click()
        self.assertFalse(self.segment(widget, volume).any())
        widget.ui.pbNextSegment.click()
        self.assertNotEqual(widget.editorNode.GetSelectedSegmentID(), first)
        widget.setTool(None)
        widget.logic.use_backend(None)
        self.delayDisplay("Test passed")
