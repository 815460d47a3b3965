"""3D volume rendering: off by default where OpenGL runs on the CPU, one switch to turn it on.

trame-slicer shows a volume with volume rendering; on a CPU renderer (Mesa's llvmpipe on a server
without a GPU) each 3D frame then takes about a second and every interaction waits for it
(facts.md). The slice views and the 3D view's slices and segments stay; only the volume rendering waits
for the user's switch.
"""

from __future__ import annotations

from typing import Any

CPU_RENDERERS = ("llvmpipe", "softpipe", "swrast", "lavapipe")


def renders_on_cpu(slicer_app) -> bool:
    """Whether the 3D view's OpenGL is a software renderer."""
    views = slicer_app.view_manager.get_threed_views()
    if not views:
        return True
    window = views[0].render_window()
    window.Render()
    report = (window.ReportCapabilities() or "").lower()
    return any(name in report for name in CPU_RENDERERS)


class VolumeRendering3D:
    """The 3D view's volume rendering of the current volume, on or off."""

    def __init__(self, slicer_app, enabled: bool | None = None) -> None:
        self.app = slicer_app
        self.enabled = (not renders_on_cpu(slicer_app)) if enabled is None else enabled
        self.volume: Any = None

    def volume_changed(self, volume) -> None:
        self.volume = volume
        self._apply()

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        self._apply()

    def _apply(self) -> None:
        if self.volume is None:
            return
        vr = self.app.volume_rendering
        if self.enabled:
            display = (vr.get_vr_display_node(self.volume) if vr.has_vr_display_node(self.volume)
                       else vr.create_display_node(self.volume))
            display.SetVisibility(True)
            self.app.display_manager.set_node_visible_in_group(self.volume)
        elif vr.has_vr_display_node(self.volume):
            vr.get_vr_display_node(self.volume).SetVisibility(False)
