"""Qt-free logic of the SlicerNNInteractive module: markups -> voxel prompts -> backend -> segment.

Nothing here imports qt, ctk, ``slicer.app``, ``slicer.mrmlScene`` or ``slicer.modules``: the scene,
the segment editor node and the backend are passed in, so it runs (and is tested) on slicer-core.
"""

from ._backends_path import ensure_backends_importable

ensure_backends_importable()

from .errors import PromptError  # noqa: E402
from .geometry import VolumeGeometry  # noqa: E402
from .pipeline import (  # noqa: E402
    REDO,
    UNDO,
    Action,
    Outcome,
    PromptPipeline,
    Request,
)
from .prompts import (  # noqa: E402
    box_prompt,
    control_points_world,
    curve_points_world,
    lasso_prompt,
    point_prompt,
    roi_frame_world,
    scribble_prompt,
)
from .segment_writer import SegmentWriter, UndoHooks, WriteError, WriteOutcome  # noqa: E402

__all__ = [
    "REDO",
    "UNDO",
    "Action",
    "Outcome",
    "PromptError",
    "PromptPipeline",
    "Request",
    "SegmentWriter",
    "UndoHooks",
    "VolumeGeometry",
    "WriteError",
    "WriteOutcome",
    "box_prompt",
    "control_points_world",
    "curve_points_world",
    "lasso_prompt",
    "point_prompt",
    "roi_frame_world",
    "scribble_prompt",
]
