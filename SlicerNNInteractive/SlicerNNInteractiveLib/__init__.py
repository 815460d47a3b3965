"""Qt-free logic of the SlicerNNInteractive module: markups -> voxel prompts -> backend -> segment.

Nothing here imports qt, ctk, ``slicer.app``, ``slicer.mrmlScene`` or ``slicer.modules``: the scene,
the segment editor node and the backend are passed in, so it runs (and is tested) on slicer-core.
"""

from ._backends_path import ensure_backends_importable

ensure_backends_importable()

from .errors import PromptError  # noqa: E402
from .geometry import VolumeGeometry  # noqa: E402
from .prompt_session import (  # noqa: E402
    REDO,  # noqa: E402
    UNDO,
    Action,
    Outcome,
    PreparedPrompt,
    PromptSession,
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
from .segment_writer import SegmentWriter, WriteOutcome  # noqa: E402

__all__ = [
    "REDO",
    "UNDO",
    "Action",
    "Outcome",
    "PreparedPrompt",
    "PromptError",
    "PromptSession",
    "SegmentWriter",
    "VolumeGeometry",
    "WriteOutcome",
    "box_prompt",
    "control_points_world",
    "curve_points_world",
    "lasso_prompt",
    "point_prompt",
    "roi_frame_world",
    "scribble_prompt",
]
