"""The Lib's one error type: a problem in the scene the user can fix, said in words they can act on."""

from __future__ import annotations


class PromptError(Exception):
    """A prompt cannot be made from the scene as it is (no volume, oblique slice, non-linear transform, ...).

    Raised before anything is sent or written, so nothing has changed; the widget shows ``str(error)``
    in its status line instead of a dialog.
    """


class ObliqueViewError(PromptError):
    """The slice view a box, lasso or scribble was drawn on is oblique to the volume's voxel grid.

    The widget then offers to align the slice views with the volume (Slicer's "Rotate to volume plane").
    """
