"""The page: trame-slicer's views with the module's tools, segment list, status and files.

Words and order follow the Slicer module (Point, Box, Scribble, Lasso, Positive/Negative, Next segment,
Reset, Undo, Redo). ``#nni-state`` carries the page's state as data attributes (busy, volume, error,
segments) so that tests and scripts wait on explicit states instead of sleeping.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trame.app import TrameApp
from trame.widgets import client, html
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.utils import write_client_files_to_dir
from trame_vuetify.ui.vuetify3 import SinglePageLayout
from trame_vuetify.widgets import vuetify3 as v3

from .files import ImageReadError, add_volume, histories_zip, labels_file, segmentation_file
from .host import WebHost
from .keys import require_key
from .lib import ensure_lib_importable
from .rendering import VolumeRendering3D
from .shortcuts import script as shortcuts_script

ensure_lib_importable()

from SlicerNNInteractiveLib.automatic import LOCAL, BackendChoice  # noqa: E402
from SlicerNNInteractiveLib.logic import Event  # noqa: E402

TOOLS = {"point": "Point", "bbox": "Box", "scribble": "Scribble", "lasso": "Lasso"}  # the module's words
LAYOUT = "Axial Primary"  # axial view large, 3D, coronal and sagittal beside it


class NNInteractiveWebApp(TrameApp):
    """One scene (one SlicerApp) and its page; one per browser session in the multi-annotator launcher."""

    def __init__(self, server=None, choice: BackendChoice | None = None, images: Sequence[str] = (),
                 volume_rendering: bool | None = None, rca_encoder: str | None = None, api_key: str = "") -> None:
        super().__init__(server)
        require_key(self.server, api_key)
        self.slicer_app = SlicerApp()
        register_rca_factories(self.slicer_app.view_manager, self.server, rca_encoder=rca_encoder)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.layout_manager.set_layout(LAYOUT)
        self.host = WebHost(self.slicer_app, choice or BackendChoice(LOCAL), self._show, self._busy_changed)
        self.rendering = VolumeRendering3D(self.slicer_app, volume_rendering)
        self.volume: Any = None
        self._downloads = Path(tempfile.mkdtemp(prefix="nninteractive-web-"))
        self._init_state()
        self._build_ui()
        self.slicer_app.segmentation_editor.segmentation_modified.connect(self._segments_changed)
        self.slicer_app.segmentation_editor.active_segment_id_changed.connect(lambda *_: self._segments_changed())
        for image in images:
            self.open_image(image)

    # -- images and files -----------------------------------------------------------------------------
    def open_image(self, path: str | Path, name: str | None = None) -> bool:
        """Show and segment the image at ``path``; a file that cannot be read changes nothing and says why."""
        try:
            volume = add_volume(self.slicer_app.scene, path, name)
        except ImageReadError as exc:
            self._error(f"{exc} Nothing was changed.")
            return False
        old = self.volume
        self.volume = volume
        display = self.slicer_app.display_manager
        display.show_volume_in_slice_background(volume)
        display.show_volume_in_slice_foreground(None)
        self.host.segment_volume(volume)
        self.rendering.volume_changed(volume)
        display.reset_views()
        if old is not None:
            self.slicer_app.scene.RemoveNode(old)
        with self.state:
            self.state.volume_name = volume.GetName()
            self.state.error = ""
            self.state.status = f"Loaded {volume.GetName()}: choose a tool and place a prompt."
        self._segments_changed()
        return True

    async def upload(self, files: list[dict]) -> None:
        with self.state:
            self.state.uploading = True
        try:
            with tempfile.TemporaryDirectory() as folder:
                paths = sorted(write_client_files_to_dir(files or [], folder))
                if not paths:
                    self._error("No file was received. Nothing was changed.")
                    return
                # One file is an image; several are one DICOM series (their folder).
                target = paths[0] if len(paths) == 1 else folder
                self.open_image(target, Path(paths[0]).name.split(".")[0] if len(paths) > 1 else None)
        finally:
            with self.state:
                self.state.uploading = False

    def download(self, kind: str) -> Any:
        """The segmentation (``seg``: .seg.nrrd, ``labels``: NIfTI labels) or the histories (``history``: zip)."""
        node = self.host.editor_node.GetSegmentationNode()
        if node is None:
            self._error("Load an image and segment it first: there is nothing to save yet.")
            return None
        if kind == "history":
            content = histories_zip(self.slicer_app.scene)
        else:
            path = (segmentation_file(node, self._downloads) if kind == "seg"
                    else labels_file(self.slicer_app.segmentation_editor, node, self._downloads))
            content = path.read_bytes()
        return self.server.protocol.addAttachment(content)

    # -- state shown on the page -------------------------------------------------------------------------
    def _init_state(self) -> None:
        s = self.state
        s.trame__title = "nnInteractive"
        s.status, s.error, s.loading, s.busy, s.uploading = "Open an image to start.", "", "", False, False
        s.tool, s.positive, s.volume_name, s.segments, s.active_segment = None, True, "", [], ""
        s.render_3d, s.finished = self.rendering.enabled, 0
        s.tool_ready = None  # the tool the server has switched to (the page's toggle answers at once)
        s.change("tool")(self._set_tool)
        s.change("positive")(lambda positive, **_: self.host.set_positive(bool(positive)))
        s.change("render_3d")(lambda render_3d, **_: self.rendering.set_enabled(bool(render_3d)))
        s.change("active_segment")(self._select_segment)

    def _show(self, event: Event) -> None:
        """The Logic's events, as the desktop widget shows them (status line, connection, model loading)."""
        with self.state:
            if event.kind == "status":
                self.state.status = event.text
                failed = "not changed" in event.text or "could not" in event.text
                self.state.error = event.text if failed else ""
            elif event.kind == "loading":
                self.state.loading = event.text
            elif event.kind in ("connection", "install", "fallback", "align"):
                self.state.status = event.text

    def _busy_changed(self, busy: bool) -> None:
        with self.state:
            self.state.busy = busy
            if not busy:
                self.state.loading = ""
                self.state.finished += 1  # the page's "all queued work is done" count, for waiting on

    def _error(self, text: str) -> None:
        with self.state:
            self.state.error = text
            self.state.status = text

    def _segments_changed(self, *_: Any) -> None:
        editor = self.slicer_app.segmentation_editor
        segments = []
        for segment_id in editor.get_segment_ids():
            segment = editor.get_segment(segment_id)
            color = "#" + "".join(f"{round(255 * c):02x}" for c in segment.GetColor())
            segments.append({"id": segment_id, "name": segment.GetName(), "color": color})
        with self.state:
            self.state.segments = segments
            self.state.active_segment = editor.active_segment_id

    def _set_tool(self, tool: str | None, **_: Any) -> None:
        self.host.set_tool(tool)
        self.state.tool_ready = tool

    def _select_segment(self, active_segment: str, **_: Any) -> None:
        editor = self.slicer_app.segmentation_editor
        if active_segment and active_segment != editor.active_segment_id:
            editor.set_active_segment_id(active_segment)

    def _next_segment(self) -> None:
        self._run(self.host.next_segment, "New segment: the next prompt starts it.")

    def _reset_segment(self) -> None:
        self._run(self.host.reset_segment, "Segment emptied; the next prompt starts it again.")

    def _run(self, change, done: str) -> None:
        try:
            change()
        except Exception as exc:  # PromptError and friends carry a message for the user
            self._error(str(exc))
            return
        with self.state:
            self.state.status, self.state.error = done, ""
        self._segments_changed()

    # -- page ---------------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        ctrl = self.server.controller
        upload = ctrl.trigger_name(self.upload)
        save = ctrl.trigger_name(self.download)
        with SinglePageLayout(self.server, full_height=True) as self.ui:
            self.ui.title.set_text("nnInteractive")
            client.Script(shortcuts_script())  # the module's keys: P X S L N E U Y, Ctrl+Shift+R
            with self.ui.toolbar as toolbar:
                toolbar.density = "compact"
                html.Input(type="file", id="nni-upload", multiple=True,
                           change=f"trigger('{upload}', [$event.target.files])",
                           style="max-width: 16em")
                v3.VSpacer()
                v3.VCheckbox(v_model=("render_3d",), label="3D volume rendering", id="nni-render-3d",
                             density="compact", hide_details=True, classes="mx-2", style="max-width: 14em")
                for kind, word in (("seg", ".seg.nrrd"), ("labels", "NIfTI labels"), ("history", "histories")):
                    suffix = {"seg": ".seg.nrrd", "labels": ".nii.gz", "history": "-histories.zip"}[kind]
                    v3.VBtn(f"Save {word}", id=f"nni-save-{kind}", density="compact", variant="text",
                            click=f"utils.download((volume_name || 'segmentation') + '{suffix}', "
                                  f"trigger('{save}', ['{kind}']), 'application/octet-stream')")
            with self.ui.content:
                v3.VProgressLinear(indeterminate=True, v_show="busy || uploading || loading", color="primary",
                                   id="nni-progress")
                with html.Div(classes="d-flex", style="height: calc(100vh - 120px)"):
                    with html.Div(style="width: 19em; overflow-y: auto", classes="pa-2"):
                        with v3.VBtnToggle(v_model=("tool", None), density="compact", divided=True,
                                           classes="d-flex flex-wrap mb-2", style="height: auto"):
                            for tool, word in TOOLS.items():
                                v3.VBtn(word, value=tool, id=f"nni-tool-{tool}", size="small")
                        with v3.VBtnToggle(v_model=("positive", True), mandatory=True, density="compact",
                                           classes="mb-2"):
                            v3.VBtn("Positive", value=True, id="nni-positive", color="green", size="small")
                            v3.VBtn("Negative", value=False, id="nni-negative", color="red", size="small")
                        with html.Div(classes="d-flex flex-wrap ga-1 mb-2"):
                            v3.VBtn("Next segment", id="nni-next", click=self._next_segment, size="small")
                            v3.VBtn("Reset", id="nni-reset", click=self._reset_segment, size="small")
                            v3.VBtn("Undo", id="nni-undo", click=self.host.undo, size="small")
                            v3.VBtn("Redo", id="nni-redo", click=self.host.redo, size="small")
                        html.Div("Segments", classes="text-subtitle-2")
                        with v3.VList(density="compact", id="nni-segments"):
                            with v3.VListItem(v_for="s in segments", key="s.id", title=("s.name",),
                                              active=("s.id === active_segment",),
                                              click="active_segment = s.id"):
                                with v3.Template(v_slot_prepend=True):
                                    html.Div(style=("{background: s.color, width: '1em', height: '1em', "
                                                    "marginRight: '0.5em'}",))
                    with html.Div(style="flex: 1; position: relative"):
                        self.layout_manager.initialize_layout_grid(self.ui)
            with self.ui.footer:
                html.Div("{{ loading || status }}", id="nni-status",
                         classes=("error ? 'text-red' : ''",))
                html.Div(id="nni-state", style="display: none", raw_attrs=[
                    ':data-busy="busy || uploading"', ':data-volume="volume_name"', ':data-error="error"',
                    ':data-segments="segments.length"', ':data-active="active_segment"',
                    ':data-finished="finished"', ':data-tool="tool_ready"'])
