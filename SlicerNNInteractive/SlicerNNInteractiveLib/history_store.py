"""Segment histories kept in the scene, so they are saved with it (scene save and .mrb) and come back with it.

Each history is an attribute of its segmentation node, holding the history file's exact text
(``docs/history.md``): MRML writes node attributes into the scene file, so nothing else needs
saving, and exporting a history is copying that text to a file.
"""

from __future__ import annotations

import re
from pathlib import Path

from nninteractive_slicer import history as history_io
from nninteractive_slicer.history import History

from .errors import PromptError

ATTRIBUTE_PREFIX = "NNInteractive.History."


def attribute_name(segment_id: str) -> str:
    return ATTRIBUTE_PREFIX + segment_id


def store_history_text(segmentation_node, segment_id: str, text: str) -> None:
    """Keep a history file's text in the scene (encoded elsewhere: on the worker thread, off the GUI's)."""
    segmentation_node.SetAttribute(attribute_name(segment_id), text)


def saved_history_text(segmentation_node, segment_id: str) -> str | None:
    """The segment's saved history as text (None if it has none), to be parsed off the main thread."""
    return segmentation_node.GetAttribute(attribute_name(segment_id)) or None


def parse_history(text: str, segment_name: str) -> History:
    """A saved history's text as a History; HistoryFormatError naming the segment if it cannot be read."""
    return history_io.loads(text, f"the history of segment '{segment_name}'")


def read_history(segmentation_node, segment_id: str) -> History | None:
    """The segment's saved history, None if it has none; HistoryFormatError if it cannot be read."""
    text = saved_history_text(segmentation_node, segment_id)
    return None if text is None else parse_history(text, _segment_name(segmentation_node, segment_id))


def segments_with_history(segmentation_node) -> list[str]:
    """Ids of the node's segments that have a history (histories of deleted segments are left out)."""
    segmentation = segmentation_node.GetSegmentation()
    names = segmentation_node.GetAttributeNames() or ()
    ids = [name[len(ATTRIBUTE_PREFIX):] for name in names if name.startswith(ATTRIBUTE_PREFIX)]
    return [i for i in ids if segmentation.GetSegment(i) is not None]


def export_history(segmentation_node, segment_id: str, path: str | Path) -> Path:
    """Write the segment's history to a file (the format ``nninteractive-slicer replay`` reads)."""
    text = segmentation_node.GetAttribute(attribute_name(segment_id))
    if not text:
        raise PromptError(
            f"The segment '{_segment_name(segmentation_node, segment_id)}' has no nnInteractive history: "
            "it was not made with nnInteractive prompts in this scene."
        )
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path


def load_history(path: str | Path) -> History:
    """A history file (e.g. for the Replay action); PromptError saying what is wrong with it."""
    try:
        return history_io.load(path)
    except history_io.HistoryFormatError as exc:
        raise PromptError(str(exc)) from exc


def export_all(scene, folder: str | Path) -> list[Path]:
    """Every history in the scene, one file each, named after segmentation and segment."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSegmentationNode")
        for segment_id in segments_with_history(node):
            name = f"{node.GetName()}-{_segment_name(node, segment_id)}-{segment_id}"
            written.append(export_history(node, segment_id, folder / f"{_safe(name)}.history.json"))
    return written


class HistoryAutosave:
    """Writes every history in the scene to ``folder`` after every ``every`` recorded steps (0: never)."""

    def __init__(self, folder: str | Path = "", every: int = 0) -> None:
        self.folder, self.every = str(folder), int(every)
        self._steps = 0

    @property
    def enabled(self) -> bool:
        return bool(self.folder) and self.every > 0

    def stepped(self, scene) -> list[Path]:
        """Count one step; save when due. Returns the files written (none when not due or off)."""
        if not self.enabled:
            return []
        self._steps += 1
        if self._steps % self.every:
            return []
        return export_all(scene, self.folder)


def _segment_name(segmentation_node, segment_id: str) -> str:
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    return segment.GetName() if segment is not None else segment_id


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "segment"
