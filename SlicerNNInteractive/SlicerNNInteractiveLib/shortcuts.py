"""The module's keyboard shortcuts, chosen around the keys Slicer's slice views already use.

Slicer's slice views bind B and F (previous/next slice), R (reset field of view), T (foreground
opacity), G (label opacity) and V (slice visibility), among others (vtkMRMLSliceIntersectionWidget).
A shortcut taking one of them would break that key in every view while the module is shown, so none
does; nor does one take S, with which Markups snaps the hovered point to the slice (vtkSlicerMarkupsWidget).
The one destructive action, emptying the segment, needs two modifiers.
"""

from __future__ import annotations

SLICE_VIEW_KEYS = frozenset("BFGRTV")
MARKUPS_KEYS = frozenset("S")
DESTRUCTIVE = frozenset({"reset"})

# Action -> Qt key sequence. The letters are underlined in the buttons' texts.
SHORTCUTS = {
    "point": "P",
    "bbox": "X",
    "scribble": "D",
    "lasso": "L",
    "sign": "N",
    "next": "E",
    "undo": "U",
    "redo": "Y",
    "reset": "Ctrl+Shift+R",
}


def problems(shortcuts: dict[str, str]) -> list[str]:
    """Why a scheme would break Slicer's slice views or let one stray key destroy work (empty when fine)."""
    found = []
    for action, key in shortcuts.items():
        unmodified = "+" not in key
        if unmodified and key.upper() in SLICE_VIEW_KEYS:
            found.append(f"{action}: {key} is a slice-view key")
        if unmodified and key.upper() in MARKUPS_KEYS:
            found.append(f"{action}: {key} is a Markups key")
        if unmodified and action in DESTRUCTIVE:
            found.append(f"{action}: a destructive action on one unmodified key")
    return found
