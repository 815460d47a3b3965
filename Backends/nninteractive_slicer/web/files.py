"""Images in, segmentations and histories out: the formats the headless command reads and writes.

Images are read by the headless command's reader (NIfTI, NRRD, MHA, a DICOM folder), so the browser,
the command line and ``nninteractive-slicer segment`` accept the same files and refuse the same ones
with the same words. A file is read completely before anything in the scene changes.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import slicer
from slicer import util

from ..headless.images import ImageReadError, read_image
from .lib import ensure_lib_importable

ensure_lib_importable()

from SlicerNNInteractiveLib.history_store import export_all  # noqa: E402

__all__ = ["ImageReadError", "add_volume", "histories_zip", "labels_file", "segmentation_file"]
LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def add_volume(scene, path: str | Path, name: str | None = None):
    """A scalar volume node for the image at ``path`` (raises ImageReadError before touching the scene)."""
    volume = read_image(path)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name or _stem(Path(path)))
    util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    node.SetIJKToRASMatrix(util.vtkMatrixFromArray(volume.index_to_ras))
    node.CreateDefaultDisplayNodes()
    return node


def segmentation_file(segmentation_node, folder: Path) -> Path:
    """The segmentation as Slicer saves it (``.seg.nrrd``: every segment, its name, colour and history)."""
    path = folder / f"{_safe(segmentation_node.GetName())}.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    if not storage.WriteData(segmentation_node):
        raise OSError(f"The segmentation could not be written to {path.name}.")
    return path


def labels_file(editor, segmentation_node, folder: Path, suffix: str = ".nii.gz") -> Path:
    """One label image (each segment its label value) on the source volume's grid."""
    if suffix not in LABEL_SUFFIXES:
        raise ValueError(f"labels are written as {', '.join(LABEL_SUFFIXES)}")
    path = folder / f"{_safe(segmentation_node.GetName())}{suffix}"
    editor.export_segmentation_to_file(segmentation_node, str(path))
    return path


def histories_zip(scene) -> bytes:
    """Every segment's prompt history (docs/history.md), one JSON file each, in a zip."""
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in export_all(scene, folder):
            archive.write(path, path.name)
    return buffer.getvalue()


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".seg.nrrd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "segmentation"
