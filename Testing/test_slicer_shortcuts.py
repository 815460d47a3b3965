"""The keyboard shortcuts leave Slicer's slice-view keys alone, and emptying a segment takes more than one key."""

from __future__ import annotations

import slicer_scene  # noqa: F401 (puts the module folder on sys.path)

from SlicerNNInteractiveLib.shortcuts import SHORTCUTS, problems

# What the module bound before this scheme (tools O/B/S/L, T toggled the sign, R reset the segment).
PREVIOUS = {"point": "O", "bbox": "B", "scribble": "S", "lasso": "L", "sign": "T", "next": "E", "undo": "U",
            "reset": "R"}


def test_the_shortcuts_take_no_slice_view_key_and_reset_needs_modifiers():
    assert problems(SHORTCUTS) == []
    assert "+" in SHORTCUTS["reset"]
    assert len(set(SHORTCUTS.values())) == len(SHORTCUTS)


def test_the_previous_scheme_is_reported():
    assert problems(PREVIOUS) == [
        "bbox: B is a slice-view key",
        "scribble: S is a Markups key",
        "sign: T is a slice-view key",
        "reset: R is a slice-view key",
        "reset: a destructive action on one unmodified key",
    ]
