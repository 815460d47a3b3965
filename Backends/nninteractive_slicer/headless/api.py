"""Segment and replay from Python, without Slicer: the functions behind ``nninteractive-slicer``.

::

    from nninteractive_slicer.headless import read_image, load_prompts, segment, write_labels
    from nninteractive_slicer.headless import make_backend

    volume = read_image("ct.nii.gz")
    objects = load_prompts("prompts.json", volume)        # checked here: no model time on bad input
    with make_backend("local", model="/models/tiny", device="cpu") as backend:
        result = segment(volume, objects, backend)
    write_labels(result.labels, volume, "seg.nii.gz")      # the input's geometry, exactly
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..history import History, HistoryMismatchError, HistoryRecorder, ModelIdentity, ReplayReport, StepReport
from ..history import replay as replay_history
from ..interface import Backend
from .images import Volume
from .prompt_file import ObjectPrompts

ProgressCallback = Callable[[int, int, str], None]


@dataclass(eq=False)
class Segmentation:
    """One label array (k, j, i) for all objects (a later object wins where objects overlap) and one history each."""

    labels: np.ndarray
    histories: list[History]


def segment(volume: Volume, objects: list[ObjectPrompts], backend: Backend,
            progress: ProgressCallback | None = None) -> Segmentation:
    """Run each object's prompts, one object after the other, on one image upload."""
    total = sum(len(obj.prompts) for obj in objects)
    dtype = np.uint8 if max(obj.label for obj in objects) <= 255 else np.uint16
    labels = np.zeros(volume.array.shape, dtype=dtype)
    identity = volume.identity()
    model = ModelIdentity.of(backend.capabilities())
    backend.set_image(volume.array, volume.spacing)
    histories, done = [], 0
    for number, obj in enumerate(objects):
        if number:
            backend.reset()
        recorder = HistoryRecorder(identity, model, backend.name, name=obj.name)
        for prompt in obj.prompts:
            recorder.prompted(prompt, backend.prompt(prompt))
            done += 1
            if progress is not None:
                progress(done, total, f"{obj.name}: {prompt.kind}")
        labels[recorder.mask != 0] = obj.label
        histories.append(recorder.history)
    return Segmentation(labels, histories)


def check_replay(history: History, volume: Volume) -> None:
    """Raise HistoryMismatchError unless ``volume`` is the history's image, in voxels and in space."""
    why = history.image.mismatch(volume.identity())
    if why is not None:
        raise HistoryMismatchError(f"{volume.source} is not the image this history was made on: {why}.")


def replay(history: History, volume: Volume, backend: Backend,
           progress: ProgressCallback | None = None) -> ReplayReport:
    """Run a history again on ``volume`` (checked first); the report counts differing voxels per step."""
    check_replay(history, volume)

    def step(done: int, total: int, report: StepReport) -> None:
        if progress is not None:
            what = report.op if report.kind is None else f"{report.op} {report.kind}"
            progress(done, total, f"{what}: {report.differing_voxels} voxels differ")

    return replay_history(history, backend, volume.array, on_step=step)
