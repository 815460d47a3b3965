"""nnInteractive in 3D Slicer. This file is the Qt layer only (buttons, shortcuts, settings, observers, dialogs);
the work is in the Qt-free, tested ``SlicerNNInteractiveLib``, driven through its SlicerNNInteractiveLogic."""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin
from SlicerNNInteractiveTesting.selftest import SlicerNNInteractiveTest  # noqa: F401 (Reload and Test finds it here)

from SlicerNNInteractiveLib import (
    PromptError,
    UndoHooks,
    box_prompt,
    control_points_world,
    nodes,
    point_prompt,
    roi_frame_world,
    settings,
)
from SlicerNNInteractiveLib.automatic import AUTOMATIC, CHOICES, DEVICES, LOCAL, SERVER_KINDS, BackendChoice
from SlicerNNInteractiveLib.backends import BackendConfig, missing_requirements, recommended_requirements
from SlicerNNInteractiveLib.boxes import BoxPlacement
from SlicerNNInteractiveLib.history_store import HistoryAutosave, export_history, load_history
from SlicerNNInteractiveLib.install import INSTALLED, RECOMMENDED_INSTALLED, install, install_question
from SlicerNNInteractiveLib.logic import TIMER_MS, Event, QueuedPrompt, SlicerNNInteractiveLogic
from SlicerNNInteractiveLib.place_mode import PlaceMode
from SlicerNNInteractiveLib.shortcuts import SHORTCUTS
from SlicerNNInteractiveLib.strokes import StrokeRecorder, stroke_builder
from SlicerNNInteractiveLib.views import align_with_volume, slice_to_ras

HISTORY_FILES = "nnInteractive history (*.json)"
TOOLS = {"point": "pbPoint", "bbox": "pbBBox", "scribble": "pbScribble", "lasso": "pbLasso"}  # tool -> button


class SlicerNNInteractive(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("nnInteractive")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerNNInteractive contributors"]
        self.parent.helpText = _(
            "Promptable 3D segmentation with nnInteractive: place points, boxes, scribbles or lassos in slice "
            "views and the selected segment follows. Runs on this computer's GPU or on a server. Keys: P point, "
            "X box, D scribble, L lasso, N positive/negative, E next segment, U undo, Ctrl+Shift+R reset."
        )
        self.parent.acknowledgementText = _(
            "nnInteractive: Isensee, Rokuss, Kraemer et al. (2025), arXiv:2503.08373. Based on the "
            "SlicerNNInteractive extension by de Vente, Vaidhya Venkadesh, Lasso, van Ginneken and Sanchez."
        )


class SlicerNNInteractiveWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: SlicerNNInteractiveLogic | None = None
        self.positive = True
        self.active_tool: str | None = None
        self.markups, self.shortcuts = {}, {}  # tool -> markups node; action -> QShortcut
        self.progress = None  # the model-loading dialog
        self._keep_tool = False  # a box was completed: place mode ends, and the tool restarts it

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
        self.timer = qt.QTimer()
        self.timer.setInterval(TIMER_MS)
        self.timer.timeout.connect(self.poll)
        self.recorder = StrokeRecorder(self.onStrokeFinished)
        planes = lambda: [slice_to_ras(w.mrmlSliceNode()) for w in self.sliceWidgets()]  # noqa: E731
        self.boxes = BoxPlacement(slicer.mrmlScene, self.onBox, planes)
        self.placeMode = PlaceMode(slicer.app.applicationLogic())
        for kind, label in CHOICES.items():
            self.ui.backendCombo.addItem(label, kind)
        self.ui.deviceCombo.addItems(list(DEVICES))
        [widget.setVisible(False) for widget in (self.ui.cb3DBox, self.ui.pbApplyBox, self.ui.pbAlignViews)]
        self.signGroup = qt.QButtonGroup(self.ui.promptTypeGroup)
        for button in (self.ui.pbPositive, self.ui.pbNegative):
            self.signGroup.addButton(button)
        self.loadSettings()
        self.setupScene()
        slicer.app.aboutToQuit.connect(lambda: self.logic.close())  # before Python finalises (Logic.close)
        self.connectUi()
        self.setupShortcuts()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        interaction = self.placeMode.interaction
        self.addObserver(interaction, interaction.InteractionModeChangedEvent, self.onInteractionModeChanged)
        self.editorWidget.connect("sourceVolumeNodeChanged(vtkMRMLVolumeNode*)",  # the upload starts at once
                                  lambda volume: self.logic.image_chosen(volume) and self.timer.start(TIMER_MS))

    def connectUi(self) -> None:
        for tool, button in TOOLS.items():
            getattr(self.ui, button).clicked.connect(lambda checked, t=tool: self.setTool(t if checked else None))
        self.ui.pbPositive.clicked.connect(lambda: self.setPositive(True))
        self.ui.pbNegative.clicked.connect(lambda: self.setPositive(False))
        self.ui.pbResetSegment.clicked.connect(self.resetSegment)
        self.ui.pbNextSegment.clicked.connect(self.nextSegment)
        self.ui.pbUndo.clicked.connect(lambda: (self.logic.undo(), self.timer.start()))
        self.ui.pbRedo.clicked.connect(lambda: (self.logic.redo(), self.timer.start()))
        self.ui.pbApplyBox.clicked.connect(self.onApplyBox)
        self.ui.pbAlignViews.clicked.connect(self.alignViews)
        self.ui.backendCombo.currentIndexChanged.connect(self.onBackendKindChanged)
        for edit in (self.ui.serverUrlEdit, self.ui.apiKeyEdit, self.ui.modelEdit):
            edit.editingFinished.connect(self.onConfigEdited)  # also on every focus-out: configure() compares
        self.ui.deviceCombo.currentIndexChanged.connect(self.onConfigEdited)
        self.ui.pbTestConnection.clicked.connect(self.testConnection)
        self.ui.pbInstallLocal.clicked.connect(lambda: self.installRequirements(LOCAL))
        self.ui.pbExportHistory.clicked.connect(self.exportHistory)
        self.ui.pbReplayHistory.clicked.connect(self.replayHistory)
        self.ui.autosaveFolderEdit.currentPathChanged.connect(self.onAutosaveChanged)
        self.ui.autosaveEverySpin.valueChanged.connect(self.onAutosaveChanged)

    def setupShortcuts(self) -> None:
        """The scheme of SlicerNNInteractiveLib.shortcuts, enabled only while the module is shown."""
        actions = {tool: getattr(self.ui, button).click for tool, button in TOOLS.items()}
        actions.update(sign=lambda: self.setPositive(not self.positive), reset=self.resetSegment,
                       next=self.nextSegment, undo=self.ui.pbUndo.click, redo=self.ui.pbRedo.click)
        for action, key in SHORTCUTS.items():
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.setEnabled(False)
            shortcut.activated.connect(actions[action])
            self.shortcuts[action] = shortcut

    def setupScene(self) -> None:
        """The module's Segment Editor node, markups nodes and pipeline; again after the scene is closed."""
        self.editorNode = nodes.editor_node(slicer.mrmlScene)
        self.editorWidget.setMRMLSegmentEditorNode(self.editorNode)
        # Module Undo/Redo go through the editor's own history (overwritten segments come back); histories recorded.
        e = self.editorWidget
        if self.logic is None:
            self.logic = SlicerNNInteractiveLogic(choice=self.choice())
            self.logic.autosave = self.autosave()
        self.logic.use_scene(slicer.mrmlScene, self.editorNode, slicer.app.applicationLogic(),
                             UndoHooks(e.saveStateForUndo, e.undo, e.redo))
        self.markups = nodes.prompt_markups(slicer.mrmlScene)
        self.addObserver(self.markups["point"], slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onPointPlaced)
        self.updateSignColors()

    def enter(self) -> None:
        for shortcut in self.shortcuts.values():
            shortcut.setEnabled(True)
        self.editorWidget.setupViewObservations()
        volume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if self.editorNode.GetSourceVolumeNode() is None and volume is not None:
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
        """Leaving the module: no tool, no Segment Editor effect and no shortcut stays active (as Segment Editor)."""
        for shortcut in self.shortcuts.values():
            shortcut.setEnabled(False)
        self.setTool(None)
        self.editorWidget.setActiveEffect(None)
        self.editorWidget.removeViewObservations()

    def cleanup(self) -> None:
        """Quit or reload: no more work; the device's current call ends first, within a bound (Logic.close)."""
        self.exit()
        self.removeObservers()
        self.timer.stop()
        for shortcut in self.shortcuts.values():
            shortcut.setParent(None)
        self.logic.close()

    def onSceneEndClose(self, caller=None, event=None) -> None:
        self.setTool(None)
        self.logic.drop_queue()  # their markups went with the scene
        self.setupScene()

    def choice(self) -> BackendChoice:
        kind = self.ui.backendCombo.currentData or AUTOMATIC
        local = BackendConfig(LOCAL, device=self.ui.deviceCombo.currentText, model=self.ui.modelEdit.text.strip())
        server = BackendConfig(settings.server_kind(qt.QSettings(), kind), self.ui.serverUrlEdit.text.strip(),
                               self.ui.apiKeyEdit.text.strip())
        return BackendChoice(kind, local, server)

    def loadSettings(self) -> None:
        choice = settings.load(qt.QSettings())
        self.ui.backendCombo.setCurrentIndex(max(0, self.ui.backendCombo.findData(choice.kind)))
        self.addDevice(choice.local.device)
        self.ui.deviceCombo.setCurrentText(choice.local.device)
        self.ui.modelEdit.text = choice.local.model
        self.ui.autosaveFolderEdit.currentPath, self.ui.autosaveEverySpin.value = settings.autosave(qt.QSettings())
        self.showServerSettings(choice.kind)

    def addDevice(self, device: str) -> None:
        if self.ui.deviceCombo.findText(device) < 0:
            self.ui.deviceCombo.addItem(device)

    def showServerSettings(self, kind: str) -> None:
        """Automatic shows both the local and the server settings."""
        self.ui.serverUrlEdit.text, self.ui.apiKeyEdit.text = settings.server_fields(qt.QSettings(), kind)
        for widget in (self.ui.serverUrlEdit, self.ui.serverUrlLabel, self.ui.apiKeyEdit, self.ui.apiKeyLabel):
            widget.setVisible(kind != LOCAL)
        for widget in (self.ui.deviceCombo, self.ui.deviceLabel, self.ui.modelEdit, self.ui.modelLabel,
                       self.ui.pbInstallLocal):
            widget.setVisible(kind not in SERVER_KINDS)

    def onBackendKindChanged(self, index: int) -> None:
        kind = self.ui.backendCombo.itemData(index)
        if kind in SERVER_KINDS:
            settings.remember_server(qt.QSettings(), kind)
        self.showServerSettings(kind)
        self.onConfigEdited()

    def onConfigEdited(self, *args) -> None:
        """Only a real change of configuration drops the backend; it takes effect with the next prompt."""
        settings.save(qt.QSettings(), self.choice())
        if self.logic is not None and self.logic.configure(self.choice()):
            self.ui.connectionLabel.text = ""

    def testConnection(self) -> None:
        self.logic.configure(self.choice())
        self.logic.test_connection()
        self.timer.start(TIMER_MS)

    def installRequirements(self, kind: str, offer: str = "") -> None:
        """Ask, then install what the backend kind lacks (PyTorch is not asked about again). ``offer``: what would
        make it faster, asked once per user whatever the answer (installing never interrupts a prompt)."""
        if offer and settings.offered(qt.QSettings(), kind):
            return
        missing = recommended_requirements(kind) if offer else missing_requirements(kind)
        if not missing:
            return self.status(_("Everything this backend needs is installed."))
        settings.remember_offered(qt.QSettings(), kind) if offer else None
        if not self.ask(install_question(missing, offer)):
            return
        progress = slicer.util.createProgressDialog(labelText=_("Installing ..."), maximum=len(missing))

        def step(requirement: str, index: int) -> None:
            progress.labelText, progress.value = _("Installing {what} ...").format(what=requirement), index
            slicer.app.processEvents()

        try:
            done = RECOMMENDED_INSTALLED if offer else INSTALLED
            self.status(install(missing, slicer.util.pip_install, step=step, done=done))
        finally:
            progress.close()

    def ask(self, question: str) -> bool:  # the self-test answers in its place
        return slicer.util.confirmYesNoDisplay(question)

    def offerFallback(self, question: str) -> None:
        if not self.ask(question):
            self.logic.decline_fallback()
            return
        self.logic.accept_fallback()  # for this run: the saved choice stays
        self.timer.start(TIMER_MS)

    def enqueue(self, item: QueuedPrompt) -> None:
        self.logic.enqueue(item)
        self.timer.start(TIMER_MS)

    def poll(self) -> None:
        """Fast while work runs, slow while a backend is open (heartbeats, snapshots), stopped otherwise."""
        for event in self.logic.poll():
            self.show(event)
        interval = self.logic.timer_ms
        self.timer.stop() if interval is None else self.timer.setInterval(interval)

    def show(self, event: Event) -> None:
        """Dialogs open from their own timer callback: never inside a markups callback or a poll."""
        handlers = {
            "status": lambda: self.status(event.text),
            "connection": lambda: setattr(self.ui.connectionLabel, "text", event.text),
            "backend": lambda: self.updateCapabilities(event.data),
            "devices": lambda: [self.addDevice(device) for device in event.data],
            "loading": lambda: self.showLoading(event.text),
            "align": lambda: self.ui.pbAlignViews.setVisible(True),
            "install": lambda: qt.QTimer.singleShot(0, lambda: self.installRequirements(event.data)),
            "recommend": lambda: qt.QTimer.singleShot(0, lambda: self.installRequirements(event.data, event.text)),
            "fallback": lambda: qt.QTimer.singleShot(0, lambda: self.offerFallback(event.text)),
        }
        handlers[event.kind]()

    def showLoading(self, text: str) -> None:
        """A busy dialog while the model loads (it is downloaded on first use); empty text: it has loaded."""
        if text:
            if self.progress is None:
                self.progress = slicer.util.createProgressDialog(labelText=text, maximum=0)
                self.progress.canceled.connect(self.logic.cancel_build)
            self.progress.labelText = text
        elif self.progress is not None:
            self.progress.close()
            self.progress = None

    def updateCapabilities(self, caps) -> None:
        """Tools and the undo button follow what the backend can do (all enabled until one is built)."""
        for tool, button in TOOLS.items():
            getattr(self.ui, button).setEnabled(caps is None or tool in caps.prompt_kinds)
        self.ui.cb3DBox.setVisible(bool(caps and caps.supports_3d_bbox))
        self.ui.pbUndo.setEnabled(caps is None or caps.undo_depth > 0)
        self.ui.pbRedo.setEnabled(caps is None or caps.supports_redo)

    def status(self, message: str) -> None:
        self.ui.statusLabel.text = message

    def sliceWidgets(self) -> list:
        layout = slicer.app.layoutManager()
        return [layout.sliceWidget(name) for name in layout.sliceViewNames()]

    def setTool(self, tool: str | None) -> None:
        """Activate one tool (or none); it stays active after each prompt so the next one can follow at once."""
        self.active_tool = tool
        for name, button in TOOLS.items():
            getattr(self.ui, button).setChecked(name == tool)
        self.recorder.stop()
        if tool != "bbox":
            self.boxes.stop()
        if tool in ("point", "bbox"):
            self.startPlace(tool)
        else:
            self.placeMode.stop()
        if tool in ("scribble", "lasso"):
            views = [(w.sliceView().interactorStyle().GetInteractor(), w.mrmlSliceNode()) for w in self.sliceWidgets()]
            self.recorder.start(self.markups[tool], views)
        self.ui.pbApplyBox.setVisible(False)

    def startPlace(self, tool: str) -> None:
        self._keep_tool = False
        if self.active_tool == tool:
            node = self.boxes.start() if tool == "bbox" else self.markups["point"]  # a fresh ROI: no stale corner
            self.updateSignColors()
            self.placeMode.start(node, persistent=tool == "point")

    def onInteractionModeChanged(self, caller=None, event=None) -> None:
        """The user left place mode (Esc, right-click, another module): deactivate the tool."""
        if self.active_tool in ("point", "bbox") and not self._keep_tool and self.placeMode.left_by_user():
            self.setTool(None)

    def setPositive(self, positive: bool) -> None:
        self.positive = positive
        (self.ui.pbPositive if positive else self.ui.pbNegative).setChecked(True)  # exclusive group
        self.updateSignColors()

    def updateSignColors(self) -> None:
        color = (0.2, 0.8, 0.3) if self.positive else (0.9, 0.2, 0.2)
        for markup in [*self.markups.values(), self.boxes.roi]:
            if markup is not None and markup.GetDisplayNode() is not None:
                markup.GetDisplayNode().SetSelectedColor(*color)
                markup.GetDisplayNode().SetColor(*color)

    def alignViews(self) -> None:
        """One click for oblique volumes: every slice view on the volume's voxel planes."""
        volume = self.editorNode.GetSourceVolumeNode()
        if volume is not None:
            align_with_volume([w.mrmlSliceNode() for w in self.sliceWidgets()], volume)
            for widget in self.sliceWidgets():
                widget.sliceLogic().SnapSliceOffsetToIJK()
            self.status(_("The slice views now follow the volume's voxel planes: draw the prompt again."))
        self.ui.pbAlignViews.setVisible(False)

    def onPointPlaced(self, caller=None, event=None) -> None:
        node = self.markups["point"]
        position, positive = control_points_world(node)[-1], self.positive
        node.SetNthControlPointLabel(node.GetNumberOfControlPoints() - 1, "+" if positive else "-")
        self.enqueue(QueuedPrompt(lambda g: point_prompt(position, g, positive)))

    def onBox(self, frame) -> None:
        """The second corner was clicked: send the box, or let the user adjust it in 3D first."""
        self._keep_tool = True  # placement ends now; the box tool goes on
        self.ui.pbApplyBox.setVisible(self.ui.cb3DBox.checked)
        if not self.ui.cb3DBox.checked:
            self.submitBox(frame, three_d=False)

    def onApplyBox(self) -> None:
        """3D box: the ROI as the user adjusted it (the button shows once a box is placed)."""
        self.ui.pbApplyBox.setVisible(False)
        self.submitBox(roi_frame_world(self.boxes.roi), three_d=True)

    def submitBox(self, frame, three_d: bool) -> None:
        positive = self.positive
        self.enqueue(QueuedPrompt(lambda g: box_prompt(*frame, g, positive, three_d)))
        if self.active_tool == "bbox":
            qt.QTimer.singleShot(0, lambda: self.startPlace("bbox"))

    def onStrokeFinished(self, points, normal) -> None:
        """A finished freehand stroke becomes a scribble or (closed) lasso prompt on that slice."""
        thickness = lambda: self.logic.capabilities.scribble_thickness  # noqa: E731 (asked when built: no network)
        build = stroke_builder(self.active_tool, points, normal, self.positive, thickness)
        self.enqueue(QueuedPrompt(build, self.markups[self.active_tool].RemoveAllControlPoints))

    def autosave(self) -> HistoryAutosave:
        return HistoryAutosave(self.ui.autosaveFolderEdit.currentPath, self.ui.autosaveEverySpin.value)

    def onAutosaveChanged(self, *args) -> None:
        settings.save_autosave(qt.QSettings(), self.ui.autosaveFolderEdit.currentPath, self.ui.autosaveEverySpin.value)
        self.logic.autosave = self.autosave()

    def exportHistory(self) -> None:
        segmentation, segment_id = self.editorNode.GetSegmentationNode(), self.editorNode.GetSelectedSegmentID()
        if segmentation is None or not segment_id:
            return self.status(_("Select the segment whose history to export."))
        name = segmentation.GetSegmentation().GetSegment(segment_id).GetName()
        path = qt.QFileDialog.getSaveFileName(None, _("Export segment history"), f"{name}.history.json", HISTORY_FILES)
        try:
            if path:
                self.status(_("History written to {path}.").format(path=export_history(segmentation, segment_id, path)))
        except (PromptError, OSError) as exc:
            self.status(str(exc))

    def replayHistory(self) -> None:
        path = qt.QFileDialog.getOpenFileName(None, _("Replay segment history"), "", HISTORY_FILES)
        try:
            history = load_history(path) if path else None
        except PromptError as exc:
            return self.status(str(exc))
        if history is not None:
            self.changeSegment(lambda: self.logic.replay(history), _("Replaying the history into a new segment ..."))
            self.timer.start()

    def resetSegment(self) -> None:
        self.logic.drop_queue()
        self.changeSegment(self.logic.reset_segment, _("Segment emptied; the next prompt starts it again."))

    def nextSegment(self) -> None:
        self.changeSegment(self.logic.new_segment, _("New segment: the next prompt starts it."))

    def changeSegment(self, change, done: str) -> None:
        """Start the segment over or start a new one: the placed points belong to the old object."""
        self.markups["point"].RemoveAllControlPoints()
        try:
            change()
            self.status(done)
        except PromptError as exc:
            self.status(str(exc))
