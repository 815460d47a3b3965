"""One side of the save-and-reopen test, run as its own process: ``uninterrupted`` places 10 prompts, saves
the scene as .mrb, places the 11th and saves its mask; ``resumed`` opens the .mrb in a fresh process, places
the 11th prompt, and saves its mask. Both on the local backend with the tiny model, in voxel prompts."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import slicer
from slicer_scene import make_scene, oblique_lps_matrix
from synthetic import blob_centre, mr_like_image, prompt_script

from nninteractive_slicer.backends.local import LocalBackend
from nninteractive_slicer.interface import Point
from SlicerNNInteractiveLib.recording import recording_pipeline
from SlicerNNInteractiveLib.segments import full_box, index_to_segmentation, read_mask

SHAPE = (64, 64, 64)
PROMPTS = prompt_script(SHAPE, seed=5, count=10)
NEXT = Point(tuple(c + 2 for c in blob_centre(SHAPE)), True)  # type: ignore[arg-type]


def open_mrb(scene, path: Path) -> None:
    """Read a .mrb the way Slicer does (it needs a cache directory under slicer-core)."""
    cache_dir = path.parent / "cache"
    cache_dir.mkdir(exist_ok=True)
    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(str(cache_dir))
    io = slicer.vtkDataIOManager()
    io.SetCacheManager(cache)
    scene.SetCacheManager(cache)
    scene.SetDataIOManager(io)
    if not scene.ReadFromMRB(str(path)):
        raise RuntimeError(f"{path} could not be read")


def mask_of(pipeline, editor) -> np.ndarray:
    from SlicerNNInteractiveLib.geometry import VolumeGeometry

    volume, segmentation = editor.GetSourceVolumeNode(), editor.GetSegmentationNode()
    index_to_seg = index_to_segmentation(VolumeGeometry.from_volume_node(volume), segmentation)
    return read_mask(segmentation, editor.GetSelectedSegmentID(), index_to_seg, full_box(SHAPE))


def main(mode: str, model_dir: str, folder: str) -> None:
    folder_path = Path(folder)
    s = make_scene()
    backend = LocalBackend(model_dir=model_dir, device="cpu", torch_threads=2)
    if mode == "uninterrupted":
        volume = s.volume(mr_like_image(SHAPE, seed=2), oblique_lps_matrix())
        segmentation = s.segmentation(volume)
        segmentation.GetSegmentation().AddEmptySegment("tumour", "tumour")
        editor = s.editor_node(volume, segmentation)
        editor.SetSelectedSegmentID("tumour")
        pipeline = recording_pipeline(s.scene, backend, editor, s.app_logic)
        for prompt in PROMPTS:
            pipeline.submit(prompt)
        if not s.scene.WriteToMRB(str(folder_path / "scene.mrb")):
            raise RuntimeError("the scene could not be saved")
    else:
        open_mrb(s.scene, folder_path / "scene.mrb")
        volume = s.scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        segmentation = s.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
        editor = s.editor_node(volume, segmentation)
        editor.SetSelectedSegmentID("tumour")
        pipeline = recording_pipeline(s.scene, backend, editor, s.app_logic)
        np.save(folder_path / "reopened.npy", mask_of(pipeline, editor))
    started = time.perf_counter()
    outcome = pipeline.submit(NEXT)
    elapsed = time.perf_counter() - started
    np.save(folder_path / f"{mode}.npy", mask_of(pipeline, editor))
    (folder_path / f"{mode}.txt").write_text(f"{outcome.message}\n{elapsed:.3f}\n")
    backend.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown of VTK objects: the files above are the result
