"""The prompt history of a segment: a versioned, documented JSON artifact (``docs/history.md``).

A history says which image and model made a segment, where it started, and every step since, in
voxel indices and world RAS. It is what Slicer saves with the scene to resume a segment after a
restart, what ``nninteractive-slicer replay`` runs again, and a record of how a label was made.
"""

from .codec import mask_digest, voxel_digest
from .io import VERSION, HistoryFormatError, dumps, from_dict, load, loads, save, schema, to_dict
from .model import History, ImageIdentity, ModelIdentity, Step, StepResult
from .recorder import HistoryRecorder
from .replay import HistoryMismatchError, ReplayReport, StepReport, check_image, replay

__all__ = [
    "VERSION",
    "History",
    "HistoryFormatError",
    "HistoryMismatchError",
    "HistoryRecorder",
    "ImageIdentity",
    "ModelIdentity",
    "ReplayReport",
    "Step",
    "StepReport",
    "StepResult",
    "check_image",
    "dumps",
    "from_dict",
    "voxel_digest",
    "load",
    "loads",
    "mask_digest",
    "replay",
    "save",
    "schema",
    "to_dict",
]
