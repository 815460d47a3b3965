"""Real image files for the headless tests, written without SimpleITK (which the command reads them with):
NIfTI through nibabel, NRRD by hand. Also a tiny NRRD header reader, so geometry is checked by a second reader."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np


def _placement(angle: float = 0.2, spacing=(0.9, 0.8, 1.6), origin=(40.0, -25.0, 12.5)) -> np.ndarray:
    """An oblique (rotated about an oblique axis), anisotropic, x-flipped voxel-to-RAS placement."""
    axis = np.array([0.3, 1.0, 0.4]) / np.linalg.norm([0.3, 1.0, 0.4])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([-1.0, 1.0, 1.0]) @ np.diag(spacing)
    matrix[:3, 3] = origin
    return matrix


# The voxel-to-RAS placement of the test images (i, j, k order, as nibabel's affine).
IJK_TO_RAS = _placement()
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_nifti(image_kji: np.ndarray, path: Path, ijk_to_ras: np.ndarray = IJK_TO_RAS) -> Path:
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(image_kji.transpose(2, 1, 0)), ijk_to_ras), str(path))
    return path


def write_nrrd(image_kji: np.ndarray, path: Path, ijk_to_ras: np.ndarray = IJK_TO_RAS) -> Path:
    """A raw little-endian NRRD in LPS space."""
    ijk_to_lps = LPS @ ijk_to_ras
    directions = " ".join("(" + ",".join(repr(float(v)) for v in ijk_to_lps[:3, c]) + ")" for c in range(3))
    origin = "(" + ",".join(repr(float(v)) for v in ijk_to_lps[:3, 3]) + ")"
    types = {"float32": "float", "int16": "short", "uint8": "uchar", "uint16": "ushort"}
    header = (
        "NRRD0004\n"
        f"type: {types[image_kji.dtype.name]}\ndimension: 3\nspace: left-posterior-superior\n"
        f"sizes: {image_kji.shape[2]} {image_kji.shape[1]} {image_kji.shape[0]}\n"
        f"space directions: {directions}\nkinds: domain domain domain\nendian: little\nencoding: raw\n"
        f"space origin: {origin}\n\n"
    )
    voxels = np.ascontiguousarray(image_kji, image_kji.dtype.newbyteorder("<"))
    path.write_bytes(header.encode("ascii") + voxels.tobytes())
    return path


def nrrd_ijk_to_ras(path: Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Sizes (i, j, k) and the voxel-to-RAS matrix from an NRRD header, read by hand."""
    raw = path.read_bytes()
    header = raw[: raw.index(b"\n\n")].decode("ascii")
    fields = dict(line.split(": ", 1) for line in header.splitlines()[1:] if ": " in line and not line.startswith("#"))
    assert fields["space"] in ("left-posterior-superior", "LPS"), fields["space"]
    columns = [[float(v) for v in part.strip("()").split(",")] for part in fields["space directions"].split()]
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(columns).T
    matrix[:3, 3] = [float(v) for v in fields["space origin"].strip("()").split(",")]
    sizes = tuple(int(v) for v in fields["sizes"].split())
    return sizes, LPS @ matrix  # type: ignore[return-value]
