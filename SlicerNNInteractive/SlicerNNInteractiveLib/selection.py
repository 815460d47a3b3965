"""Which segment the prompts go to: the host keeps the user's selection, the Lib asks it.

Desktop Slicer keeps the selected segment in the Segment Editor node; trame-slicer keeps it in Python
(its SegmentationEditor). Both hosts hand the Lib an object with ``get`` and ``set``, so one code path
picks, creates and selects segments for either.
"""

from __future__ import annotations

from typing import Protocol


class SegmentSelection(Protocol):
    def get(self) -> str | None:
        """The selected segment's id (None or "" when none is)."""

    def set(self, segment_id: str) -> None:
        """Select ``segment_id`` (the Lib just added it)."""


class EditorNodeSelection:
    """The desktop's: the Segment Editor node's selected segment."""

    def __init__(self, editor_node) -> None:
        self.editor_node = editor_node

    def get(self) -> str | None:
        return self.editor_node.GetSelectedSegmentID()

    def set(self, segment_id: str) -> None:
        self.editor_node.SetSelectedSegmentID(segment_id)
