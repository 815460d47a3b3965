"""Renders docs/img/screenshot.png, the picture the Extensions Index shows: an axial slice of an MR-like test
volume with the segment nnInteractive made from one positive point (the tiny synthetic model, real inference on
the CPU) and that point, drawn offscreen with VTK (EGL) in Slicer's colours.

    VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow PYTHONPATH=Backends:Testing python scripts/screenshot.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import vtk
from synthetic import blob_centre, mr_like_image
from vtk.util import numpy_support

from nninteractive_slicer.backends.local import LocalBackend
from nninteractive_slicer.devtools.synthetic_model import write_model
from nninteractive_slicer.interface import Point

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "screenshot.png"
SHAPE = (64, 192, 192)


def rgb_slice(image: np.ndarray, mask: np.ndarray, point: tuple[int, int]) -> np.ndarray:
    """Grey image, the segment in Slicer's first segment colour at 80 %, the point as a green dot."""
    lo, hi = np.percentile(image, (1, 99.5))
    grey = np.clip((image - lo) / (hi - lo), 0, 1)[..., None] * np.ones(3)
    colour = np.array([128, 174, 128]) / 255
    rgb = np.where(mask[..., None], 0.2 * grey + 0.8 * colour, grey)
    yy, xx = np.indices(image.shape)
    dot = (yy - point[0]) ** 2 + (xx - point[1]) ** 2 <= 9
    rgb[dot] = (0.2, 0.8, 0.3)
    return (255 * rgb).astype(np.uint8)


def main() -> None:
    model_dir = write_model(Path(tempfile.mkdtemp()) / "tiny", "tiny", seed=0)
    image = mr_like_image(SHAPE, seed=1)
    centre = blob_centre(SHAPE)
    with LocalBackend(model_dir=model_dir, device="cpu", torch_threads=2) as backend:
        backend.set_image(image)
        backend.prompt(Point(tuple(centre), True))
        mask = backend.get_mask()
    k = centre[0]
    pixels = np.ascontiguousarray(rgb_slice(image[k], mask[k] > 0, (centre[1], centre[2]))[::-1])
    data = vtk.vtkImageData()
    data.SetDimensions(pixels.shape[1], pixels.shape[0], 1)
    data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(pixels.reshape(-1, 3), deep=True))
    actor = vtk.vtkImageActor()
    actor.GetMapper().SetInputData(data)
    renderer = vtk.vtkRenderer()
    renderer.AddActor(actor)
    renderer.ResetCamera()
    renderer.GetActiveCamera().Zoom(1.4)
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(768, 768)
    window.AddRenderer(renderer)
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(OUT))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    print(OUT, int((mask > 0).sum()), "voxels in the segment")


if __name__ == "__main__":
    main()
