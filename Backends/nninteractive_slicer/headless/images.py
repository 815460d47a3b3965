"""Medical images in and out through SimpleITK: NIfTI, NRRD, MHA and DICOM series folders.

One library reads every format with the same geometry rules (direction cosines, LPS), it ships with
3D Slicer, and nnU-Net (so the local backend and the server) already depends on it. A label image is
written with the input's exact geometry, copied from the image it was read with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..history import ImageIdentity
from ..interface import IMAGE_DTYPES

# LPS (ITK) <-> RAS (Slicer): x and y change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# (k, j, i, 1) <-> (i, j, k, 1)
REVERSE = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


class ImageReadError(ValueError):
    """The image cannot be read or is not a single 3D scalar volume; the message names the file."""


def _sitk() -> Any:
    try:
        import SimpleITK
    except ImportError as exc:
        raise ImageReadError(
            "Reading and writing images needs SimpleITK: pip install 'nninteractive-slicer[cli]'."
        ) from exc
    return SimpleITK


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scalar image as the backends take it: ``array`` indexed (k, j, i), placed by ``index_to_ras``."""

    array: np.ndarray
    index_to_ras: np.ndarray
    source: str
    itk_image: Any  # the SimpleITK image it was read as, whose geometry outputs copy

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(k, j, i) spacing in mm, as backends take it."""
        return tuple(float(s) for s in self.itk_image.GetSpacing()[::-1])  # type: ignore[return-value]

    def identity(self) -> ImageIdentity:
        return ImageIdentity.of(self.array, self.index_to_ras, self.spacing)

    def to_index(self, ras: np.ndarray) -> np.ndarray:
        """World RAS points (N, 3) -> continuous (k, j, i) indices, voxel centres at integers."""
        points = np.atleast_2d(np.asarray(ras, dtype=float))
        return (np.c_[points, np.ones(len(points))] @ np.linalg.inv(self.index_to_ras).T)[:, :3]


def read_image(path: str | os.PathLike) -> Volume:
    """Read a NIfTI/NRRD/MHA file or a folder holding one DICOM series."""
    sitk = _sitk()
    path = Path(path)
    try:
        if path.is_dir():
            image = _read_dicom_series(sitk, path)
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageReadError(f"{path}: cannot be read as an image ({_first_line(exc)}).") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            f"{path}: is a {image.GetDimension()}D image with {image.GetNumberOfComponentsPerPixel()} component(s) "
            "per voxel; nnInteractive segments 3D single-channel images."
        )
    array = sitk.GetArrayFromImage(image)
    if array.dtype.name not in IMAGE_DTYPES:
        array = array.astype(np.float32)
    return Volume(array, index_to_ras(image), str(path), image)


def index_to_ras(image: Any) -> np.ndarray:
    """The 4x4 from homogeneous (k, j, i) to world RAS mm of a SimpleITK image."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction @ np.diag(image.GetSpacing())
    ijk_to_lps[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ ijk_to_lps @ REVERSE


def write_labels(labels: np.ndarray, like: Volume, path: str | os.PathLike) -> None:
    """Write a (k, j, i) label array with exactly the geometry ``like`` was read with (compressed)."""
    sitk = _sitk()
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(like.itk_image)
    try:
        sitk.WriteImage(image, str(path), True)
    except RuntimeError as exc:
        raise ImageReadError(f"{path}: cannot be written ({_first_line(exc)}); use .nii.gz, .nrrd or .mha.") from exc


def _read_dicom_series(sitk: Any, folder: Path) -> Any:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise ImageReadError(f"{folder}: holds no DICOM series.")
    if len(series) > 1:
        raise ImageReadError(f"{folder}: holds {len(series)} DICOM series ({', '.join(series)}); "
                             "give a folder with one series.")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))
    return reader.Execute()


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
