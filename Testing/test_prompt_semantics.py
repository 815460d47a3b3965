"""What positive and negative mean, for every prompt kind and backend, on an object that already exists.

The ``rule`` model segments the bright voxels a prompt's patch sees, adds what positive prompts mark and
removes what negative ones mark, so the right answer is known: on a bright cube already segmented, a
negative prompt over it removes voxels (the result is a subset of the mask before), and the positive
prompt of the same kind changes nothing, which backends must report as an unchanged result.
"""

from __future__ import annotations

import numpy as np
from synthetic import CUBE_BOX, CUBE_CENTRE, CUBE_SHAPE, bright_box_image, disk_crop

from nninteractive_slicer.interface import PROMPT_KINDS, BBox, Lasso, Point, Prompt, Scribble


def prompt_over_the_cube(kind: str, positive: bool) -> Prompt:
    """A prompt of ``kind`` well inside the cube; box, scribble and lasso on one axial plane."""
    c = CUBE_CENTRE
    if kind == "point":
        return Point(c, positive)
    box = ((c[0], c[0] + 1), (c[1] - 6, c[1] + 7), (c[2] - 6, c[2] + 7))
    if kind == "bbox":
        return BBox(box, positive)
    crop = disk_crop((13, 13), 0, filled=kind == "lasso")
    return (Lasso if kind == "lasso" else Scribble)(crop, box, positive)


def test_negative_prompts_remove_and_positive_ones_over_the_object_change_nothing(rule_backend):
    image, cube = bright_box_image(CUBE_SHAPE, CUBE_BOX)
    rule_backend.set_image(image)
    mirror = np.zeros(image.shape, np.uint8)
    rule_backend.prompt(Point(CUBE_CENTRE)).apply_to(mirror)
    np.testing.assert_array_equal(mirror, cube)
    for kind in PROMPT_KINDS:
        negative = rule_backend.prompt(prompt_over_the_cube(kind, positive=False))
        assert negative.changed, kind
        negative.apply_to(mirror)
        np.testing.assert_array_equal(mirror, rule_backend.get_mask(), err_msg=kind)
        removed = cube.astype(bool) & ~mirror.astype(bool)
        assert removed.any(), kind
        assert not (mirror.astype(bool) & ~cube.astype(bool)).any(), f"a negative {kind} added voxels"
        rule_backend.undo().apply_to(mirror)
        np.testing.assert_array_equal(mirror, cube, err_msg=kind)

        positive = rule_backend.prompt(prompt_over_the_cube(kind, positive=True))
        assert not positive.changed and positive.box is None and positive.patch is None, kind
        positive.apply_to(mirror)
        np.testing.assert_array_equal(rule_backend.get_mask(), cube, err_msg=kind)
        np.testing.assert_array_equal(mirror, cube, err_msg=kind)
