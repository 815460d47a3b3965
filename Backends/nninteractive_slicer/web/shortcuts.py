"""The module's keyboard shortcuts on the page: the same keys (SlicerNNInteractiveLib.shortcuts) press the same
buttons, so a key does exactly what its button does. Keys typed into a field are left alone."""

from __future__ import annotations

import json

from .lib import ensure_lib_importable

ensure_lib_importable()

from SlicerNNInteractiveLib.shortcuts import SHORTCUTS  # noqa: E402

BUTTONS = {"point": "nni-tool-point", "bbox": "nni-tool-bbox", "scribble": "nni-tool-scribble",
           "lasso": "nni-tool-lasso", "next": "nni-next", "undo": "nni-undo", "redo": "nni-redo",
           "reset": "nni-reset", "sign": "sign"}


def script() -> str:
    """A window keydown listener mapping each shortcut (e.g. "Ctrl+Shift+R") to its button's id."""
    keys = {key.upper(): BUTTONS[action] for action, key in SHORTCUTS.items()}
    return f"""
window.addEventListener("keydown", (event) => {{
  const tag = (document.activeElement || {{}}).tagName;
  if (tag === "INPUT" || tag === "TEXTAREA") return;
  const key = (event.ctrlKey ? "CTRL+" : "") + (event.shiftKey ? "SHIFT+" : "") + event.key.toUpperCase();
  let id = {json.dumps(keys)}[key];
  if (!id) return;
  if (id === "sign") {{
    const positive = document.getElementById("nni-positive");
    id = positive && positive.classList.contains("v-btn--active") ? "nni-negative" : "nni-positive";
  }}
  const button = document.getElementById(id);
  if (button) {{ event.preventDefault(); button.click(); }}
}});
"""
