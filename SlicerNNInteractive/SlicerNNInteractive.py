"""nnInteractive in 3D Slicer: prompts placed in slice views become segments in the Segment Editor.

This file is the thin Qt layer: buttons, shortcuts, settings, markups observers, a freehand stroke
recorder and the hand-off of backend calls to a worker thread. Everything that reads or writes
MRML for a prompt lives in the Qt-free ``SlicerNNInteractiveLib`` (tested against slicer-core).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SlicerNNInteractiveLib import (
    UNDO,
    PromptError,
    PromptSession,
    box_prompt,
    control_points_world,
    lasso_prompt,
    point_prompt,
    roi_frame_world,
    scribble_prompt,
)
from SlicerNNInteractiveLib.backends import (
    KINDS,
    TORCH_REQUIREMENT,
    BackendConfig,
    make_backend,
    missing_requirements,
    model_download_bytes,
    recommended_requirements,
)
from SlicerNNInteractiveLib.history_store import HistoryAutosave, export_history, load_history
from SlicerNNInteractiveLib.recording import RecordingPromptSession, ReplayRequest
from SlicerNNInteractiveLib.session import SYNC
from SlicerNNInteractiveLib.upload import upload_status

SETTINGS = "SlicerNNInteractive"
EDITOR_NODE_TAG = "SlicerNNInteractive"
DEFAULT_URLS = {"remote": "http://127.0.0.1:1527", "official": "http://127.0.0.1:1527"}
DEVICES = ("auto", "cuda", "cpu")
POLL_MS = 50
# Tool -> (button, shortcut key, markups class shown while it is used).
TOOLS = {
    "point": ("pbPoint", "O", "vtkMRMLMarkupsFiducialNode"),
    "bbox": ("pbBBox", "B", "vtkMRMLMarkupsROINode"),
    "scribble": ("pbScribble", "S", "vtkMRMLMarkupsCurveNode"),
    "lasso": ("pbLasso", "L", "vtkMRMLMarkupsClosedCurveNode"),
}


class SlicerNNInteractive(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("nnInteractive")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerNNInteractive contributors"]
        self.parent.helpText = _(
            "Promptable 3D segmentation with nnInteractive: place points, boxes, scribbles or lassos in slice "
            "views and the selected segment follows. Runs on this computer's GPU or on a server."
        )
        self.parent.acknowledgementText = _(
            "nnInteractive: Isensee, Rokuss, Kraemer et al. (2025), arXiv:2503.08373. Based on the "
            "SlicerNNInteractive extension by de Vente, Vaidhya Venkadesh, Lasso, van Ginneken and Sanchez."
        )


@dataclass
class QueuedPrompt:
    """A prompt waiting for the backend: how to build it from the scene, and what to clear afterwards."""

    build: Any  # geometry -> Prompt, or UNDO
    done: Callable[[], None] = lambda: None


class StrokeRecorder:
    """Freehand strokes on slice views (press, drag, release), shown live in a markups curve.

    Scribble and Lasso use it: the points are sampled from mouse moves at least a few pixels
    apart, in the slice's XY -> RAS, and handed over with the slice's normal on release.
    Events are taken before the view's own interactor style sees them, so the view does not pan.
    """

    MIN_PIXELS = 3.0

    def __init__(self, on_finished: Callable[[np.ndarray, np.ndarray], None]) -> None:
        self.on_finished = on_finished
        self.node = None
        self._tags: dict[tuple[Any, str], int] = {}
        self._slice_node = None
        self._last_xy = None

    def start(self, node) -> None:
        self.stop()
        self.node = node
        layout = slicer.app.layoutManager()
        for name in layout.sliceViewNames():
            widget = layout.sliceWidget(name)
            interactor = widget.sliceView().interactorStyle().GetInteractor()
            for event in ("LeftButtonPressEvent", "MouseMoveEvent", "LeftButtonReleaseEvent"):
                tag = interactor.AddObserver(
                    event, lambda caller, ev, w=widget, e=event: self._on_event(caller, e, w), 10.0
                )
                self._tags[(interactor, event)] = tag

    def stop(self) -> None:
        for (interactor, _event), tag in self._tags.items():
            interactor.RemoveObserver(tag)
        self._tags = {}
        self._slice_node = None
        self.node = None

    def _on_event(self, interactor, event: str, slice_widget) -> None:
        slice_node = slice_widget.mrmlSliceNode()
        xy = interactor.GetEventPosition()
        if event == "LeftButtonPressEvent":
            self._slice_node = slice_node
            self.node.RemoveAllControlPoints()
            self._add(xy)
        elif self._slice_node is not slice_node:
            return  # hovering without a stroke, or in another view: let the view handle it
        elif event == "MouseMoveEvent":
            if np.hypot(xy[0] - self._last_xy[0], xy[1] - self._last_xy[1]) >= self.MIN_PIXELS:
                self._add(xy)
        else:
            self._add(xy)
            to_ras = slice_node.GetSliceToRAS()
            normal = np.array([to_ras.GetElement(r, 2) for r in range(3)])
            self._slice_node = None
            self.on_finished(control_points_world(self.node), normal)
        interactor.GetCommand(self._tags[(interactor, event)]).SetAbortFlag(1)

    def _add(self, xy) -> None:
        ras = self._slice_node.GetXYToRAS().MultiplyPoint((xy[0], xy[1], 0.0, 1.0))[:3]
        self.node.AddControlPointWorld(vtk.vtkVector3d(*ras))
        self._last_xy = xy


class SlicerNNInteractiveWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.backend = None
        self.session: PromptSession | None = None
        self.positive = True
        self.active_tool: str | None = None
        self.queue: list[QueuedPrompt] = []
        self.running: tuple[Any, Future, QueuedPrompt] | None = None
        self.building: Future | None = None
        self.building_config: BackendConfig | None = None
        self.progress = None
        self.offered: set[str] = set()  # backend kinds whose recommended packages were offered
        self.markups: dict[str, Any] = {}
        self.shortcuts: dict[str, Any] = {}
        self._restarting_place = False
        self._restart_scheduled = False
        self._box_corner: np.ndarray | None = None
        self._last_download_check = 0.0
        self.started_at = 0.0

    # -- setup ------------------------------------------------------------------------------------
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        ui_widget = slicer.util.loadUI(self.resourcePath("UI/SlicerNNInteractive.ui"))
        self.layout.addWidget(ui_widget)
        self.ui = slicer.util.childWidgetVariables(ui_widget)
        ui_widget.setMRMLScene(slicer.mrmlScene)

        self.editorWidget = slicer.qMRMLSegmentEditorWidget()
        self.editorWidget.setMaximumNumberOfUndoStates(20)
        self.editorWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.segmentEditorFrame.layout().addWidget(self.editorWidget)

        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnInteractive-setup")
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.recorder = StrokeRecorder(self.onStrokeFinished)

        for kind, label in KINDS.items():
            self.ui.backendCombo.addItem(label, kind)
        for device in DEVICES:
            self.ui.deviceCombo.addItem(device)
        self.ui.pbRedo.setVisible(False)  # no backend offers redo yet
        self.ui.cb3DBox.setVisible(False)
        self.ui.pbApplyBox.setVisible(False)
        self.signGroup = qt.QButtonGroup(self.ui.promptTypeGroup)
        self.signGroup.setExclusive(True)
        self.signGroup.addButton(self.ui.pbPositive)
        self.signGroup.addButton(self.ui.pbNegative)

        self.loadSettings()
        self.connectUi()
        self.setupShortcuts()
        self.setupScene()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        self.addObserver(interaction, interaction.InteractionModeChangedEvent, self.onInteractionModeChanged)

    def connectUi(self) -> None:
        for tool, (button, _key, _cls) in TOOLS.items():
            getattr(self.ui, button).clicked.connect(lambda checked, t=tool: self.setTool(t if checked else None))
        self.ui.pbPositive.clicked.connect(lambda: self.setPositive(True))
        self.ui.pbNegative.clicked.connect(lambda: self.setPositive(False))
        self.ui.pbResetSegment.clicked.connect(self.resetSegment)
        self.ui.pbNextSegment.clicked.connect(self.nextSegment)
        self.ui.pbUndo.clicked.connect(self.undoPrompt)
        self.ui.pbApplyBox.clicked.connect(self.onBoxPlaced)
        self.ui.backendCombo.currentIndexChanged.connect(self.onBackendKindChanged)
        for edit in (self.ui.serverUrlEdit, self.ui.apiKeyEdit, self.ui.modelEdit):
            edit.editingFinished.connect(self.onConfigEdited)
        self.ui.deviceCombo.currentIndexChanged.connect(self.onConfigEdited)
        self.ui.pbTestConnection.clicked.connect(self.testConnection)
        self.ui.pbInstallLocal.clicked.connect(lambda: self.installRequirements("local"))
        self.ui.pbExportHistory.clicked.connect(self.exportHistory)
        self.ui.pbReplayHistory.clicked.connect(self.replayHistory)
        self.ui.autosaveFolderEdit.currentPathChanged.connect(self.onAutosaveChanged)
        self.ui.autosaveEverySpin.valueChanged.connect(self.onAutosaveChanged)
        self.editorWidget.connect("sourceVolumeNodeChanged(vtkMRMLVolumeNode*)", self.onSourceVolumeChanged)

    def setupShortcuts(self) -> None:
        """Single-key shortcuts (the underlined letters), enabled only while the module is shown."""
        actions = {key: getattr(self.ui, button).click for button, key, _cls in TOOLS.values()}
        actions.update({"T": self.togglePositive, "R": self.resetSegment, "E": self.nextSegment, "U": self.undoPrompt})
        for key, action in actions.items():
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.setEnabled(False)
            shortcut.activated.connect(action)
            self.shortcuts[key] = shortcut

    def setupScene(self) -> None:
        """The module's Segment Editor node and markups nodes; again after the scene is closed."""
        node = slicer.mrmlScene.GetSingletonNode(EDITOR_NODE_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag(EDITOR_NODE_TAG)
            node = slicer.mrmlScene.AddNode(node)
        self.editorNode = node
        self.editorWidget.setMRMLSegmentEditorNode(node)
        self.session = RecordingPromptSession(
            slicer.mrmlScene,
            self.backend,
            node,
            slicer.app.applicationLogic(),
            save_undo=self.editorWidget.saveStateForUndo,  # prompts are undone with the editor's Undo too
            autosave=self.autosave(),
        )
        self.markups = {}
        for tool, (_button, _key, class_name) in TOOLS.items():
            markup = slicer.mrmlScene.AddNewNodeByClass(class_name, f"nnInteractive {tool}")
            markup.SetSaveWithScene(False)
            markup.CreateDefaultDisplayNodes()
            if tool in ("scribble", "lasso"):
                markup.SetCurveTypeToLinear()
                markup.SetLocked(True)
                markup.GetDisplayNode().SetPropertiesLabelVisibility(False)
            self.markups[tool] = markup
        self.addObserver(self.markups["point"], slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onPointPlaced)
        self.addObserver(self.markups["bbox"], slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onBoxDefined)
        self.updateSignColors()

    def enter(self) -> None:
        for shortcut in self.shortcuts.values():
            shortcut.setEnabled(True)
        self.editorWidget.setupViewObservations()
        if self.editorNode.GetSourceVolumeNode() is None:
            volume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if volume is not None:
                self.setVolume(volume)

    def setVolume(self, volume) -> None:
        """Segment ``volume``: the Segment Editor needs a segmentation before it accepts a source volume."""
        if self.editorNode.GetSegmentationNode() is None:
            segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
            segmentation.CreateDefaultDisplayNodes()
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
            self.editorWidget.setSegmentationNode(segmentation)
        self.editorWidget.setSourceVolumeNode(volume)

    def exit(self) -> None:
        for shortcut in self.shortcuts.values():
            shortcut.setEnabled(False)
        self.setTool(None)
        self.editorWidget.removeViewObservations()

    def cleanup(self) -> None:
        self.exit()
        self.removeObservers()
        self.timer.stop()
        for shortcut in self.shortcuts.values():
            shortcut.setParent(None)
        self.shortcuts = {}
        if self.backend is not None:
            self.backend.close()
        self.executor.shutdown(wait=False)

    def onSceneEndClose(self, caller=None, event=None) -> None:
        self.setTool(None)
        self.queue = []  # their markups went with the scene
        self.setupScene()

    # -- settings ---------------------------------------------------------------------------------
    def config(self) -> BackendConfig:
        kind = self.ui.backendCombo.currentData or "local"
        return BackendConfig(
            kind=kind,
            url=self.ui.serverUrlEdit.text.strip(),
            api_key=self.ui.apiKeyEdit.text.strip(),
            device=self.ui.deviceCombo.currentText,
            model=self.ui.modelEdit.text.strip(),
        )

    def loadSettings(self) -> None:
        settings = qt.QSettings()
        kind = settings.value(f"{SETTINGS}/backend") or "local"
        self.ui.backendCombo.setCurrentIndex(max(0, self.ui.backendCombo.findData(kind)))
        self.ui.deviceCombo.setCurrentText(settings.value(f"{SETTINGS}/local/device") or "auto")
        self.ui.modelEdit.text = settings.value(f"{SETTINGS}/local/model") or ""
        self.ui.autosaveFolderEdit.currentPath = settings.value(f"{SETTINGS}/history/autosaveFolder") or ""
        self.ui.autosaveEverySpin.value = int(settings.value(f"{SETTINGS}/history/autosaveEvery") or 0)
        self.showServerSettings(kind)

    def showServerSettings(self, kind: str) -> None:
        """URL and key are kept per server kind; the local backend has device and model instead."""
        settings = qt.QSettings()
        server = kind != "local"
        self.ui.serverUrlEdit.text = settings.value(f"{SETTINGS}/{kind}/url") or DEFAULT_URLS.get(kind, "")
        self.ui.apiKeyEdit.text = settings.value(f"{SETTINGS}/{kind}/apiKey") or ""
        for widget in (self.ui.serverUrlEdit, self.ui.serverUrlLabel, self.ui.apiKeyEdit, self.ui.apiKeyLabel):
            widget.setVisible(server)
        for widget in (
            self.ui.deviceCombo,
            self.ui.deviceLabel,
            self.ui.modelEdit,
            self.ui.modelLabel,
            self.ui.pbInstallLocal,
        ):
            widget.setVisible(not server)

    def saveSettings(self) -> None:
        config = self.config()
        settings = qt.QSettings()
        settings.setValue(f"{SETTINGS}/backend", config.kind)
        if config.kind == "local":
            settings.setValue(f"{SETTINGS}/local/device", config.device)
            settings.setValue(f"{SETTINGS}/local/model", config.model)
        else:
            settings.setValue(f"{SETTINGS}/{config.kind}/url", config.url)
            settings.setValue(f"{SETTINGS}/{config.kind}/apiKey", config.api_key)

    def onBackendKindChanged(self, index: int) -> None:
        self.showServerSettings(self.ui.backendCombo.itemData(index))
        self.onConfigEdited()

    def onConfigEdited(self, *args) -> None:
        """A changed configuration takes effect with the next prompt (a new backend gets everything again)."""
        self.saveSettings()
        self.useBackend(None)
        self.ui.connectionLabel.text = ""

    # -- backend ----------------------------------------------------------------------------------
    def useBackend(self, backend) -> None:
        """Switch to ``backend`` (None: build the configured one on the next prompt)."""
        old, self.backend = self.backend, backend
        if old is not None and old is not backend:
            self.executor.submit(old.close)
        if self.session is not None:
            self.session.backend = backend
        self.updateCapabilities()

    def updateCapabilities(self) -> None:
        caps = self.backend.capabilities() if self.backend is not None else None
        for tool, (button, _key, _cls) in TOOLS.items():
            getattr(self.ui, button).setEnabled(caps is None or tool in caps.prompt_kinds)
        self.ui.cb3DBox.setVisible(bool(caps and caps.supports_3d_bbox))
        self.ui.pbUndo.setEnabled(caps is None or caps.undo_depth > 0)

    def ensureBackend(self) -> bool:
        """True when a backend is ready; otherwise start building the configured one (off the main thread)."""
        if self.backend is not None:
            return True
        if self.building is not None:
            return False
        config = self.config()
        offer = bool(recommended_requirements(config.kind)) and config.kind not in self.offered
        if (missing_requirements(config.kind) or offer) and not self.installRequirements(config.kind):
            self.dropQueue()
            self.status(_("The backend is not installed: install it in the Configuration tab, then prompt again."))
            return False
        logging.info("nnInteractive: starting %s", config.describe())  # describe() never contains the key
        self.status(_("Starting the backend: {what} ...").format(what=config.describe()))
        if config.kind == "local":
            self.progress = slicer.util.createProgressDialog(
                labelText=_("Loading the nnInteractive model (downloaded on first use) ..."), maximum=0
            )
        self.building, self.building_config = self.executor.submit(make_backend, config), config
        self.timer.start()
        return False

    def installRequirements(self, kind: str) -> bool:
        """Install what a backend kind needs (and what makes it faster, offered once), asking first: torch via
        PyTorchUtils, then pip packages. True when the backend can run."""
        self.offered.add(kind)
        missing = missing_requirements(kind) + recommended_requirements(kind)
        if not missing:
            self.status(_("Everything this backend needs is installed."))
            return True
        if not slicer.util.confirmOkCancelDisplay(
            _("This backend needs {what}. Install now? It can take several minutes.").format(what=", ".join(missing))
        ):
            return not missing_requirements(kind)
        progress = slicer.util.createProgressDialog(labelText=_("Installing ..."), maximum=len(missing))
        try:
            for step, requirement in enumerate(missing):
                progress.labelText = _("Installing {what} ...").format(what=requirement)
                progress.value = step
                slicer.app.processEvents()
                if requirement == "torch":
                    if not self.installTorch():
                        return False
                else:
                    slicer.util.pip_install(requirement)
        except Exception as exc:  # pip or the network failed: say so, keep the module usable
            logging.exception("nnInteractive: installation failed")
            self.status(_("Installation failed: {error}. Check the network and the Python console.").format(error=exc))
            return not missing_requirements(kind)
        finally:
            progress.close()
        return not missing_requirements(kind)

    def installTorch(self) -> bool:
        try:
            import PyTorchUtils
        except ImportError:
            self.status(
                _("Install the 'PyTorch' extension from the Extensions Manager, restart Slicer, then try again.")
            )
            return False
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT
        )
        return torch is not None

    def testConnection(self) -> None:
        def check(config: BackendConfig) -> tuple[Any, str]:
            backend = make_backend(config)
            return backend, backend.check_connection()

        config = self.config()
        if missing_requirements(config.kind) and not self.installRequirements(config.kind):
            return
        self.ui.connectionLabel.text = _("Testing ...")
        self.useBackend(None)
        self.building, self.building_config = self.executor.submit(check, config), config
        self.timer.start()

    # -- tools ------------------------------------------------------------------------------------
    def setTool(self, tool: str | None) -> None:
        """Activate one tool (or none); it stays active after each prompt so the next one can follow at once."""
        self.active_tool = tool
        for name, (button, _key, _cls) in TOOLS.items():
            getattr(self.ui, button).setChecked(name == tool)
        self.recorder.stop()
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        if tool in ("point", "bbox"):
            self.startPlace(tool)
        elif interaction.GetCurrentInteractionMode() == interaction.Place:
            self._restarting_place = True
            interaction.SwitchToViewTransformMode()
            self._restarting_place = False
        if tool in ("scribble", "lasso"):
            self.recorder.start(self.markups[tool])
        self.ui.pbApplyBox.setVisible(tool == "bbox" and self.ui.cb3DBox.checked)

    def startPlace(self, tool: str) -> None:
        self._restart_scheduled = False
        self._box_corner = None
        if self.active_tool != tool:
            return
        node = self.markups[tool]
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetReferenceActivePlaceNodeClassName(node.GetClassName())
        selection.SetActivePlaceNodeID(node.GetID())
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        self._restarting_place = True
        interaction.SetPlaceModePersistence(1 if tool == "point" else 0)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self._restarting_place = False

    def onInteractionModeChanged(self, caller=None, event=None) -> None:
        """The user left place mode (Esc, right-click, another module): deactivate the tool.

        A box placement also ends place mode; the next one is then started again by a timer.
        """
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        if self._restarting_place or self._restart_scheduled or self.active_tool not in ("point", "bbox"):
            return
        if interaction.GetCurrentInteractionMode() != interaction.Place:
            self.setTool(None)

    def setPositive(self, positive: bool) -> None:
        self.positive = positive
        self.ui.pbPositive.setChecked(positive)
        self.ui.pbNegative.setChecked(not positive)
        self.updateSignColors()

    def togglePositive(self) -> None:
        self.setPositive(not self.positive)

    def updateSignColors(self) -> None:
        color = (0.2, 0.8, 0.3) if self.positive else (0.9, 0.2, 0.2)
        for markup in self.markups.values():
            markup.GetDisplayNode().SetSelectedColor(*color)
            markup.GetDisplayNode().SetColor(*color)

    # -- prompts from markups -----------------------------------------------------------------------
    def onPointPlaced(self, caller=None, event=None) -> None:
        node = self.markups["point"]
        position = control_points_world(node)[-1]
        positive = self.positive
        label = "+" if positive else "-"
        node.SetNthControlPointLabel(node.GetNumberOfControlPoints() - 1, label)
        self.enqueue(QueuedPrompt(lambda g: point_prompt(position, g, positive)))

    def onBoxDefined(self, caller=None, event=None) -> None:
        """An ROI placed with two clicks reports its first corner, then its centre (as the original extension saw)."""
        roi = self.markups["bbox"]
        position = control_points_world(roi)[0]
        if self._box_corner is None:
            self._box_corner = position
            return
        corner, self._box_corner = self._box_corner, None
        _centre, axes, _size = roi_frame_world(roi)
        size = np.abs(axes.T @ (2.0 * (position - corner)))
        if self.ui.cb3DBox.checked:
            self.ui.pbApplyBox.setVisible(True)  # adjust the box in 3D, then Apply box
            return
        self.submitBox((position, axes, size), three_d=False)

    def onBoxPlaced(self) -> None:
        """Apply box (3D): the ROI as the user adjusted it."""
        roi = self.markups["bbox"]
        if roi.GetNumberOfDefinedControlPoints() > 0:
            self.submitBox(roi_frame_world(roi), three_d=True)

    def submitBox(self, frame, three_d: bool) -> None:
        positive, roi = self.positive, self.markups["bbox"]
        self.enqueue(QueuedPrompt(lambda g: box_prompt(*frame, g, positive, three_d)))
        roi.RemoveAllControlPoints()
        if self.active_tool == "bbox":
            self._restart_scheduled = True
            qt.QTimer.singleShot(0, lambda: self.startPlace("bbox"))

    def onStrokeFinished(self, points: np.ndarray, normal: np.ndarray) -> None:
        self.submitStroke(self.active_tool, points, normal)

    def submitStroke(self, tool: str, points: np.ndarray, normal: np.ndarray) -> None:
        """A finished freehand stroke becomes a scribble or (closed) lasso prompt on that slice."""
        positive, node = self.positive, self.markups[tool]
        if tool == "lasso":
            build = lambda g: lasso_prompt(points, g, positive, normal)  # noqa: E731
        else:
            # The model's preferred thickness, read when the prompt is prepared (the backend exists by then).
            build = lambda g: scribble_prompt(  # noqa: E731
                points, g, self.backend.capabilities().scribble_thickness, positive, normal
            )
        self.enqueue(QueuedPrompt(build, node.RemoveAllControlPoints))

    # -- segment histories ------------------------------------------------------------------------
    def autosave(self) -> HistoryAutosave:
        return HistoryAutosave(self.ui.autosaveFolderEdit.currentPath, self.ui.autosaveEverySpin.value)

    def onAutosaveChanged(self, *args) -> None:
        settings = qt.QSettings()
        settings.setValue(f"{SETTINGS}/history/autosaveFolder", self.ui.autosaveFolderEdit.currentPath)
        settings.setValue(f"{SETTINGS}/history/autosaveEvery", self.ui.autosaveEverySpin.value)
        if self.session is not None:
            self.session.autosave = self.autosave()

    def exportHistory(self) -> None:
        segmentation, segment_id = self.editorNode.GetSegmentationNode(), self.editorNode.GetSelectedSegmentID()
        if segmentation is None or not segment_id:
            self.status(_("Select the segment whose history to export."))
            return
        name = segmentation.GetSegmentation().GetSegment(segment_id).GetName()
        path = qt.QFileDialog.getSaveFileName(None, _("Export segment history"), f"{name}.history.json",
                                              "nnInteractive history (*.json)")
        if path:
            try:
                self.status(_("History written to {path}.").format(path=export_history(segmentation, segment_id, path)))
            except (PromptError, OSError) as exc:
                self.status(str(exc))

    def replayHistory(self) -> None:
        path = qt.QFileDialog.getOpenFileName(None, _("Replay segment history"), "", "nnInteractive history (*.json)")
        if not path:
            return
        try:
            history = load_history(path)
        except PromptError as exc:
            self.status(str(exc))
            return
        self.changeSegment(self.session.new_segment, _("Replaying the history into a new segment ..."))
        self.enqueue(QueuedPrompt(ReplayRequest(history)))

    def showRebuildProgress(self, prepared) -> None:
        """While a saved history is replayed (once per reopened segment), show how far it got."""
        done, total = getattr(prepared.history, "progress", (0, 0))
        if total:
            bar = "#" * (20 * done // total) + "." * (20 - 20 * done // total)
            self.status(_("Rebuilding the model from the segment's history [{bar}] {done}/{total} ...").format(
                bar=bar, done=done, total=total))

    def undoPrompt(self) -> None:
        self.enqueue(QueuedPrompt(UNDO))

    def onSourceVolumeChanged(self, volume) -> None:
        """Send the new image now, while the user looks for the first prompt's place (a backend in use only)."""
        if volume is not None and self.backend is not None and self.session is not None:
            self.enqueue(QueuedPrompt(SYNC))

    def dropQueue(self) -> None:
        for item in self.queue:
            item.done()
        self.queue = []

    def resetSegment(self) -> None:
        self.dropQueue()
        self.changeSegment(self.session.reset_segment, _("Segment emptied; the next prompt starts it again."))

    def nextSegment(self) -> None:
        self.changeSegment(self.session.new_segment, _("New segment: the next prompt starts it."))

    def changeSegment(self, change: Callable[[], object], done: str) -> None:
        """Start the segment over or start a new one: the placed points belong to the old object."""
        self.markups["point"].RemoveAllControlPoints()
        try:
            change()
            self.status(done)
        except PromptError as exc:
            self.status(str(exc))

    # -- running prompts off the main thread ------------------------------------------------------
    def enqueue(self, item: QueuedPrompt) -> None:
        self.queue.append(item)
        self.pump()

    @property
    def busy(self) -> bool:
        return bool(self.queue or self.running or self.building)

    def pump(self) -> None:
        """Start the next queued prompt: read the scene here, run the backend call on its request thread."""
        if self.running is not None or not self.queue or not self.ensureBackend():
            return
        item = self.queue.pop(0)
        try:
            prepared = self.session.prepare(item.build)
        except Exception as exc:  # nothing was sent or written
            self.status(str(exc) if isinstance(exc, PromptError) else self.errorText(exc))
            item.done()
            self.pump()
            return
        sending = "uploading the image, " if prepared.image is not None else ""
        self.status(
            _("nnInteractive is working ({sending}segment {segment}) ...").format(
                sending=sending, segment=prepared.segment_id
            )
        )
        self.running = (prepared, self.backend.start(self.session.run, prepared), item)
        self.started_at = time.perf_counter()
        self.timer.start()

    def poll(self) -> None:
        if self.building is not None:
            self.pollBuilding()
        if self.running is not None and not self.running[1].done():
            self.showRebuildProgress(self.running[0])
            self.status(upload_status(self.backend) or self.ui.statusLabel.text)
        if self.running is not None and self.running[1].done():
            prepared, future, item = self.running
            self.running = None
            try:
                result = future.result()
            except Exception as exc:
                self.session.abandon(prepared)  # the segment stays exactly as it was
                self.status(self.errorText(exc))
            else:
                outcome = self.session.apply(prepared, result)
                seconds = time.perf_counter() - self.started_at
                self.status(f"{outcome.message} ({seconds:.1f} s)")
            item.done()
            self.pump()
        if not self.busy:
            self.timer.stop()

    def pollBuilding(self) -> None:
        if not self.building.done():
            if self.progress is not None and time.monotonic() - self._last_download_check > 0.5:
                self._last_download_check = time.monotonic()
                megabytes = model_download_bytes() / 1e6
                self.progress.labelText = _("Loading the nnInteractive model ({mb:.0f} MB on disk) ...").format(
                    mb=megabytes
                )
            return
        future, self.building = self.building, None
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        try:
            built = future.result()
        except Exception as exc:
            self.dropQueue()
            self.status(self.errorText(exc))
            self.ui.connectionLabel.text = self.errorText(exc)
            return
        if isinstance(built, tuple):  # Test connection: (backend, description)
            built, description = built
            self.ui.connectionLabel.text = description
        if self.building_config != self.config():  # the configuration changed while it was built
            self.executor.submit(built.close)
            self.pump()
            return
        self.useBackend(built)
        caps = built.capabilities()
        self.status(
            _("Ready: {backend}, model {model} on {device}.").format(
                backend=caps.backend, model=caps.model_id, device=caps.device
            )
        )
        self.pump()

    def errorText(self, exc: BaseException) -> str:
        """Backend errors carry messages written for the user; anything else is logged with its traceback."""
        from nninteractive_slicer.errors import BackendError

        if isinstance(exc, (BackendError, PromptError)):
            return str(exc) + _(" The segment was not changed.")
        logging.error("nnInteractive: the prompt failed", exc_info=exc)
        return _("The prompt failed ({error}); the segment was not changed. Details are in the Python console.").format(
            error=type(exc).__name__
        )

    def status(self, message: str) -> None:
        self.ui.statusLabel.text = message


class SlicerNNInteractiveTest(ScriptedLoadableModuleTest):
    """Drives the real widget with the tiny synthetic model on the CPU (needs torch + nnInteractive)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_prompts_become_segments()

    def wait(self, widget, seconds: float = 300.0) -> None:
        deadline = time.monotonic() + seconds
        while widget.busy:
            self.assertLess(time.monotonic(), deadline, "the prompt did not finish in time")
            slicer.app.processEvents()
            time.sleep(0.02)

    def test_prompts_become_segments(self) -> None:
        import tempfile
        from pathlib import Path

        if missing_requirements("local"):
            self.delayDisplay("Skipped: the local backend (torch + nnInteractive) is not installed.")
            return
        from nninteractive_slicer.backends.local import LocalBackend
        from nninteractive_slicer.core.synthetic_model import write_model
        from nninteractive_slicer.errors import BackendUnavailableError

        self.delayDisplay("Writing the tiny synthetic model and a test volume")
        model_dir = write_model(Path(tempfile.mkdtemp()) / "tiny", "tiny", seed=0)
        grid = np.indices((48, 64, 64)).astype(np.float32)
        blob = ((grid[0] - 24) / 10) ** 2 + ((grid[1] - 30) / 12) ** 2 + ((grid[2] - 30) / 12) ** 2 < 1
        image = 300.0 + 600.0 * blob + np.random.default_rng(0).normal(0, 20, blob.shape)
        volume = slicer.util.addVolumeFromArray(image.astype(np.float32), name="nnInteractive test")

        slicer.util.selectModule("SlicerNNInteractive")
        widget = slicer.modules.slicernninteractive.widgetRepresentation().self()
        backend = LocalBackend(model_dir=model_dir, device="cpu")
        widget.useBackend(backend)
        widget.setVolume(volume)
        self.assertTrue(all(s.enabled for s in widget.shortcuts.values()))

        def world(kji):
            matrix = vtk.vtkMatrix4x4()
            volume.GetIJKToRASMatrix(matrix)
            return matrix.MultiplyPoint((kji[2], kji[1], kji[0], 1.0))[:3]

        def segment_array():
            node = widget.editorNode.GetSegmentationNode()
            segment_id = widget.editorNode.GetSelectedSegmentID()
            return slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume)

        self.delayDisplay("Point")
        widget.ui.pbPoint.click()
        self.assertEqual(widget.active_tool, "point")
        widget.markups["point"].AddControlPointWorld(vtk.vtkVector3d(*world((24, 30, 30))))
        self.wait(widget)
        self.assertTrue(segment_array().any(), widget.ui.statusLabel.text)
        np.testing.assert_array_equal(segment_array(), backend.get_mask())
        self.assertEqual(widget.active_tool, "point")  # the tool stays active

        self.delayDisplay("Lasso and scribble on an axial slice")
        axial = np.array([0.0, 0.0, 1.0])
        ring = [world((24, 30 + 8 * np.cos(a), 30 + 8 * np.sin(a))) for a in np.linspace(0, 6.2, 32)]
        widget.ui.pbLasso.click()
        widget.submitStroke("lasso", np.array(ring), axial)
        self.wait(widget)
        np.testing.assert_array_equal(segment_array(), backend.get_mask())
        widget.ui.pbScribble.click()
        widget.submitStroke("scribble", np.array([world((24, 30, c)) for c in range(24, 36)]), axial)
        self.wait(widget)
        np.testing.assert_array_equal(segment_array(), backend.get_mask())

        self.delayDisplay("Negative point, undo")
        widget.togglePositive()
        self.assertTrue(widget.ui.pbNegative.checked)
        before = segment_array().copy()
        widget.markups["point"].AddControlPointWorld(vtk.vtkVector3d(*world((24, 30, 36))))
        self.wait(widget)
        widget.ui.pbUndo.click()
        self.wait(widget)
        np.testing.assert_array_equal(segment_array(), before)

        self.delayDisplay("Reset and next segment")
        first = widget.editorNode.GetSelectedSegmentID()
        widget.ui.pbResetSegment.click()
        self.assertFalse(segment_array().any())
        widget.ui.pbNextSegment.click()
        self.assertNotEqual(widget.editorNode.GetSelectedSegmentID(), first)

        self.delayDisplay("A broken server leaves the segment alone, with a message")
        widget.togglePositive()
        widget.markups["point"].AddControlPointWorld(vtk.vtkVector3d(*world((24, 30, 30))))
        self.wait(widget)
        kept = segment_array().copy()

        def server_gone(prompt):
            raise BackendUnavailableError("The server went away (self-test).")

        backend._prompt = server_gone  # this instance only
        widget.markups["point"].AddControlPointWorld(vtk.vtkVector3d(*world((24, 28, 30))))
        self.wait(widget)
        np.testing.assert_array_equal(segment_array(), kept)
        self.assertIn("not changed", widget.ui.statusLabel.text)
        del backend._prompt
        widget.setTool(None)
        widget.useBackend(None)
        self.delayDisplay("Test passed")
