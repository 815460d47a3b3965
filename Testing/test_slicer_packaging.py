"""The extension is complete: CMake lists every script and resource, metadata is filled, the UI matches the widget."""

from __future__ import annotations

import ast
import re
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import slicer_scene  # noqa: F401 (puts the module folder on sys.path)
from fixtures_python312 import MISSING, PYTHON312

from SlicerNNInteractiveLib.shortcuts import SHORTCUTS

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "SlicerNNInteractive"
WIDGET = MODULE / "SlicerNNInteractive.py"
UI = MODULE / "Resources" / "UI" / "SlicerNNInteractive.ui"
ICON = MODULE / "Resources" / "Icons" / "SlicerNNInteractive.png"
BACKENDS = REPO / "Backends" / "nninteractive_slicer"


def module_cmake_entries() -> set[str]:
    text = (MODULE / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "SlicerNNInteractive")
    entries = re.findall(r"^\s+([\w./]+\.(?:py|png|ui|json|txt))\s*$", text, re.MULTILINE)
    assert len(set(entries)) == len(entries), f"listed twice: {sorted({e for e in entries if entries.count(e) > 1})}"
    return set(entries)


def test_module_cmake_lists_every_script_and_resource():
    entries = module_cmake_entries()
    suffixes = (".py", ".png", ".ui", ".txt")
    shipped = {p.relative_to(MODULE).as_posix() for p in MODULE.rglob("*") if p.suffix in suffixes}
    shipped = {p for p in shipped if "__pycache__" not in p and p != "CMakeLists.txt"}
    assert shipped - entries == set(), "files missing from SlicerNNInteractive/CMakeLists.txt"
    assert {e for e in entries if not e.startswith("nninteractive_slicer/")} <= shipped, (
        "listed files that do not exist"
    )


def test_module_cmake_ships_the_backend_package_by_a_folder_rule_with_its_data():
    listed = {e.removeprefix("nninteractive_slicer/") for e in module_cmake_entries() if e.startswith("nninteractive_")}
    unshipped = unshipped_folders()
    assert {"server", "devtools", "web"} <= unshipped
    data = {p.relative_to(BACKENDS).as_posix() for p in BACKENDS.rglob("*.json")
            if p.relative_to(BACKENDS).parts[0] not in unshipped}
    assert listed == data, "the package's data files and the module's CMakeLists.txt disagree"


def unshipped_folders() -> set[str]:
    """The package's folders the module's CMakeLists.txt leaves out of Slicer (its folder rule)."""
    text = (MODULE / "CMakeLists.txt").read_text()
    rule = re.search(r'FILTER BACKENDS_PYTHON_SCRIPTS EXCLUDE REGEX "\^nninteractive_slicer/\(([\w|]+)\)/"', text)
    assert rule, "the folder rule is gone from SlicerNNInteractive/CMakeLists.txt"
    return set(rule.group(1).split("|"))


def test_extension_metadata():
    top = (REPO / "CMakeLists.txt").read_text()
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{field} "[^"]+"\)', top), field
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in top
    assert "add_subdirectory(SlicerNNInteractive)" in top
    s4ext = dict(
        line.split(" ", 1) if " " in line else (line, "")
        for line in (REPO / "SlicerNNInteractive.s4ext").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    for key in ("scm", "scmurl", "scmrevision", "depends", "build_subdirectory", "homepage", "contributors",
                "category", "iconurl", "status", "description", "screenshoturls", "enabled"):  # fmt: skip
        assert key in s4ext, key
    assert s4ext["category"] == "Segmentation"


def test_icon_is_a_128_pixel_png():
    header = ICON.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (128, 128)


def test_every_ui_name_the_widget_uses_exists_and_shortcuts_are_underlined():
    names = {w.get("name") for w in ET.parse(UI).iter() if w.tag in ("widget", "layout") and w.get("name")}
    used = set(re.findall(r"self\.ui\.(\w+)", WIDGET.read_text()))
    tree = ast.parse(WIDGET.read_text())
    tools = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "TOOLS"
    )
    used |= set(tools.values())
    assert used - names == set(), "the widget uses names the .ui does not have"
    texts = {w.get("name"): w.findtext("property[@name='text']/string") for w in ET.parse(UI).iter("widget")}
    buttons = {**tools, "next": "pbNextSegment", "undo": "pbUndo", "redo": "pbRedo", "sign": "pbNegative"}
    for action, button in buttons.items():
        key = SHORTCUTS[action]
        assert f"&{key.lower()}" in texts[button].lower(), f"{button} should underline {key}"
    tips = {w.get("name"): w.findtext("property[@name='toolTip']/string") or "" for w in ET.parse(UI).iter("widget")}
    assert SHORTCUTS["reset"] in tips["pbResetSegment"]


def test_the_widget_stays_qt_bindings_only():
    lines = WIDGET.read_text().splitlines()
    assert len(lines) < 450, f"the widget has {len(lines)} lines: move logic into SlicerNNInteractiveLib"


@pytest.mark.skipif(PYTHON312 is None, reason=MISSING)
def test_the_widget_compiles_under_python_312(tmp_path):
    script = f"import py_compile; py_compile.compile({str(WIDGET)!r}, cfile={str(tmp_path / 'w.pyc')!r}, doraise=True)"
    done = subprocess.run([str(PYTHON312), "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_screenshot_and_icon_urls_point_at_pictures_in_this_repository():
    """The Extensions Index fetches them from the repository's main branch: each must be a PNG committed here."""
    top = (REPO / "CMakeLists.txt").read_text()
    prefix = "https://raw.githubusercontent.com/coendevente/SlicerNNInteractive/main/"
    for field in ("ICONURL", "SCREENSHOTURLS"):
        (url,) = re.findall(rf'set\(EXTENSION_{field} "([^"]+)"\)', top)
        assert url.startswith(prefix), url
        assert (REPO / url.removeprefix(prefix)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url
