"""Prompt files turn into the voxel prompts meant: RAS and voxel spaces agree, drawn shapes land on their slice.
Also: the image reader's geometry (NIfTI, NRRD, a DICOM series) and the preview picture."""

from __future__ import annotations

import json

import numpy as np
import pytest
from image_files import IJK_TO_RAS, write_nifti, write_nrrd

from nninteractive_slicer.headless import parse_prompts, read_image, write_preview
from nninteractive_slicer.interface import BBox, Lasso, Point, Scribble


@pytest.fixture(scope="module")
def volume(tmp_path_factory, image64):
    return read_image(write_nifti(image64, tmp_path_factory.mktemp("pf") / "image.nii.gz"))


def to_ras(ijk) -> list[float]:
    return (IJK_TO_RAS @ np.r_[np.asarray(ijk, float), 1.0])[:3].tolist()


def parse(volume, space, prompts):
    text = json.dumps({"space": space, "objects": [{"label": 1, "prompts": prompts}]})
    return parse_prompts(text, volume)[0].prompts


def test_reader_places_voxels_as_nibabel_and_the_nrrd_header_do(volume, image64, tmp_path):
    reverse = np.eye(4)[[2, 1, 0, 3]]
    np.testing.assert_allclose(volume.index_to_ras @ reverse, IJK_TO_RAS, atol=1e-5)
    np.testing.assert_array_equal(volume.array, image64)
    nrrd = read_image(write_nrrd(image64, tmp_path / "image.nrrd"))
    np.testing.assert_allclose(nrrd.index_to_ras, volume.index_to_ras, atol=1e-5)
    np.testing.assert_array_equal(nrrd.array, image64)


def test_dicom_series_folder_is_read_with_its_geometry(image64, tmp_path):
    """DICOM grids are right-handed: an oblique one, written slice by slice, reads back voxel for voxel."""
    import SimpleITK as sitk

    from nninteractive_slicer.headless.images import index_to_ras

    image = sitk.GetImageFromArray(image64.astype(np.int16))
    image.SetSpacing((0.9, 0.8, 1.6))
    image.SetOrigin((40.0, -25.0, 12.5))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    folder = tmp_path / "series"
    folder.mkdir()
    direction = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (*direction[0::3], *direction[1::3]))
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {"0020|000e": "1.2.826.0.1.3680043.2.1125.1", "0020|0013": str(k + 1),
                           "0020|0032": "\\".join(f"{v:.6f}" for v in position), "0020|0037": orientation,
                           "0008|0060": "MR", "0028|0030": "0.800000\\0.900000", "0018|0050": "1.600000"}.items():
            slice_.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(slice_)
    series = read_image(folder)
    np.testing.assert_array_equal(series.array, image64.astype(np.int16))
    np.testing.assert_allclose(series.index_to_ras, index_to_ras(image), atol=1e-4)


def test_ras_and_voxel_prompts_agree(volume):
    ijk = [[30, 28, 33], [20, 22, 33], [40, 36, 33]]
    by_voxel = parse(volume, "ijk", [{"type": "point", "at": ijk[0], "positive": False},
                                     {"type": "box", "corners": ijk[1:]}])
    by_ras = parse(volume, "ras", [{"type": "point", "at": to_ras(ijk[0]), "positive": False},
                                   {"type": "box", "corners": [to_ras(c) for c in ijk[1:]]}])
    assert by_voxel == by_ras == [Point((33, 28, 30), False), BBox(((33, 34), (22, 37), (20, 41)))]


def test_lasso_fills_and_scribble_traces_on_their_slice(volume):
    square = [[10, 12, 40], [20, 12, 40], [20, 18, 40], [10, 18, 40]]
    lasso, scribble = parse(volume, "ijk", [{"type": "lasso", "points": square},
                                            {"type": "scribble", "points": square[:2]}])
    assert isinstance(lasso, Lasso) and lasso.box == ((40, 41), (12, 19), (10, 21))
    assert lasso.mask.shape == (1, 7, 11) and lasso.mask.all()
    assert isinstance(scribble, Scribble) and scribble.box[0] == (40, 41)
    assert scribble.mask[0].any(axis=0).sum() >= 11  # the stroke covers i = 10..20
    assert scribble.mask.shape[1] == 2  # two voxels thick along j


def test_preview_shows_three_slices_with_labels_and_prompts(volume, tmp_path):
    import SimpleITK as sitk

    labels = np.zeros(volume.array.shape, np.uint8)
    labels[25:35, 25:35, 25:35] = 1
    path = tmp_path / "preview.png"
    write_preview(volume, labels, [Point((30, 30, 30))], path)
    picture = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.shape[1] > 3 * 64
    red = (picture[..., 0] > picture[..., 1] + 40) & (picture[..., 0] > picture[..., 2] + 40)
    green = (picture[..., 1] == 255) & (picture[..., 0] == 0) & (picture[..., 2] == 0)
    assert red.sum() > 3 * 50 and green.sum() >= 3 * 10  # the label in all three panels, the point's crosses
