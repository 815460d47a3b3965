"""Segment histories in Slicer (slicer-core, real local backend, tiny model): recorded, saved with the scene,
resumed bit-identically in a fresh process, exported, replayed, autosaved; mismatches are told, not hidden."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from slicer_history_resume import NEXT, PROMPTS, SHAPE
from slicer_scene import CountingBackend, make_scene, oblique_lps_matrix
from synthetic import blob_centre, mr_like_image

from nninteractive_slicer import history as h
from nninteractive_slicer.history import codec
from nninteractive_slicer.interface import BBox, Point
from SlicerNNInteractiveLib import UNDO, VolumeGeometry
from SlicerNNInteractiveLib.history_store import (
    HistoryAutosave,
    attribute_name,
    export_history,
    read_history,
    segments_with_history,
)
from SlicerNNInteractiveLib.logic import QueuedPrompt, SlicerNNInteractiveLogic
from SlicerNNInteractiveLib.recording import ReplayRequest, recording_pipeline
from SlicerNNInteractiveLib.segments import full_box, index_to_segmentation, read_mask

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def real_backend(local_backend_factory):
    backend = local_backend_factory()
    yield backend
    backend.close()


class Scene:
    def __init__(self, backend, image=None, autosave=None) -> None:
        self.s = make_scene()
        self.image = mr_like_image(SHAPE, seed=2) if image is None else image
        self.volume = self.s.volume(self.image, oblique_lps_matrix())
        self.segmentation = self.s.segmentation(self.volume)
        self.segment_id = self.segmentation.GetSegmentation().AddEmptySegment("tumour", "tumour")
        self.editor = self.s.editor_node(self.volume, self.segmentation)
        self.editor.SetSelectedSegmentID(self.segment_id)
        self.backend = CountingBackend(backend)
        self.pipeline = recording_pipeline(self.s.scene, self.backend, self.editor, self.s.app_logic, autosave=autosave)

    def mask(self) -> np.ndarray:
        g = VolumeGeometry.from_volume_node(self.volume)
        return read_mask(self.segmentation, self.segment_id, index_to_segmentation(g, self.segmentation),
                         full_box(SHAPE))

    def saved(self) -> h.History:
        return read_history(self.segmentation, self.segment_id)


def test_every_step_is_recorded_in_the_scene(real_backend, tiny_model_dir):
    scene = Scene(real_backend)
    c = blob_centre(SHAPE)
    for prompt in PROMPTS[:3]:
        scene.pipeline.submit(prompt)
    scene.pipeline.submit(UNDO)
    hand = np.zeros(SHAPE, np.uint8)
    hand[10:14, 10:14, 10:14] = 1
    scene.pipeline.writer.write(scene.segmentation, scene.segment_id,
                               index_to_segmentation(VolumeGeometry.from_volume_node(scene.volume),
                                                     scene.segmentation), full_box(SHAPE), hand | scene.mask())
    scene.pipeline.submit(Point(c, True))
    saved = scene.saved()
    assert [s.op for s in saved.steps] == ["prompt"] * 3 + ["undo", "set_mask", "prompt"]
    assert saved.final_digest == h.mask_digest(scene.mask()) == h.mask_digest(real_backend.get_mask())
    assert saved.model.id == real_backend.capabilities().model_id and saved.backend == "counting"
    weights = (tiny_model_dir / "fold_0" / "checkpoint_final.pth").read_bytes()
    assert saved.model.checkpoint_digest == "sha256:" + hashlib.sha256(weights).hexdigest()
    g = VolumeGeometry.from_volume_node(scene.volume)
    assert np.allclose(saved.image.index_to_ras, g.index_to_world)
    assert np.allclose(saved.image.to_ras(c), (g.index_to_world @ np.r_[c, 1.0])[:3])
    assert saved.image.digest == h.voxel_digest(scene.image)
    assert segments_with_history(scene.segmentation) == [scene.segment_id]


def resume_run(mode: str, model_dir: Path, folder: Path) -> str:
    path = os.pathsep.join(str(REPO / p) for p in ("Backends", "Testing", "SlicerNNInteractive"))
    done = subprocess.run([sys.executable, str(REPO / "Testing" / "slicer_history_resume.py"), mode, str(model_dir),
                           str(folder)], capture_output=True, text=True, timeout=900, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr[-3000:]
    return (folder / f"{mode}.txt").read_text()


def test_a_reopened_scene_continues_bit_identically_in_a_fresh_process(tiny_model_dir, tmp_path):
    """The issue's test: 10 prompts, save as .mrb; a fresh process opens it and places the 11th prompt."""
    resume_run("uninterrupted", tiny_model_dir, tmp_path)
    assert (tmp_path / "scene.mrb").stat().st_size > 0
    message = resume_run("resumed", tiny_model_dir, tmp_path)
    uninterrupted, resumed = np.load(tmp_path / "uninterrupted.npy"), np.load(tmp_path / "resumed.npy")
    assert uninterrupted.any() and not np.array_equal(uninterrupted, np.load(tmp_path / "reopened.npy"))
    np.testing.assert_array_equal(resumed, uninterrupted)
    assert "stays as saved" not in message


def test_without_a_rebuild_the_next_prompt_would_differ(real_backend):
    """Why the rebuild matters: starting the model from the saved segment instead gives another mask."""
    first = Scene(real_backend)
    for prompt in PROMPTS:
        first.pipeline.submit(prompt)
    first.pipeline.submit(NEXT)
    expected = first.mask()
    text = first.segmentation.GetAttribute(attribute_name(first.segment_id))
    second = Scene(real_backend)
    second.pipeline.submit(ReplayRequest(h.loads(text)))
    np.testing.assert_array_equal(second.mask(), expected)  # the replay action rebuilds the whole history
    restarted = Scene(real_backend)
    history = h.loads(text)
    restarted.pipeline.writer.write(restarted.segmentation, restarted.segment_id,
                                   index_to_segmentation(VolumeGeometry.from_volume_node(restarted.volume),
                                                         restarted.segmentation), full_box(SHAPE),
                                   _mask_after(history, len(PROMPTS)))
    restarted.pipeline.submit(NEXT)  # no saved history: the model starts from the segment
    assert not np.array_equal(restarted.mask(), expected)


def _mask_after(history: h.History, steps: int) -> np.ndarray:
    mask = history.start_mask()
    for step in history.steps[:steps]:
        if step.result.box is not None:
            mask[tuple(slice(lo, hi) for lo, hi in step.result.box)] = step.result.patch
    return mask


@pytest.mark.parametrize(("tamper", "notice"), [
    ("image", "its history was made on another image"),
    ("model", "its history was made with the model 'another-model'"),
    ("edited", "it was edited after its last nnInteractive step"),
    ("corrupt", "Its saved history cannot be used"),
])
def test_a_history_that_no_longer_matches_is_told_and_the_segment_kept(real_backend, tamper, notice):
    first = Scene(real_backend)
    for prompt in PROMPTS[:2]:
        first.pipeline.submit(prompt)
    saved_mask = first.mask()
    text = first.segmentation.GetAttribute(attribute_name(first.segment_id))
    image = first.image.copy()
    if tamper == "image":
        image[0, 0, 0] += 1
    second = Scene(real_backend, image=image)
    if tamper == "edited":
        saved_mask[5:8, 5:8, 5:8] = 1
    second.pipeline.writer.write(second.segmentation, second.segment_id,
                                index_to_segmentation(VolumeGeometry.from_volume_node(second.volume),
                                                      second.segmentation), full_box(SHAPE), saved_mask)
    if tamper == "model":
        text = text.replace(f'"id":"{real_backend.capabilities().model_id}"', '"id":"another-model"')
    if tamper == "corrupt":
        text = text.replace('"version":1', '"version":7')
    second.segmentation.SetAttribute(attribute_name(second.segment_id), text)
    outcome = second.pipeline.submit(Point(blob_centre(SHAPE), True))
    assert notice in outcome.message
    assert second.backend.calls["prompt"] == 1  # nothing replayed
    np.testing.assert_array_equal(second.backend.last_mask, saved_mask)  # the model started from the segment
    steps = second.saved().steps
    assert steps[-1].op == "prompt"
    if tamper == "edited":  # same image and model: the old history goes on, with the hand edit as a step
        assert [s.op for s in steps] == ["prompt", "prompt", "set_mask", "prompt"]
    else:
        assert len(steps) == 1 and h.mask_digest(second.saved().initial_mask) == h.mask_digest(saved_mask)


def test_export_replay_and_autosave(real_backend, tmp_path):
    autosave = HistoryAutosave(tmp_path / "auto", every=2)
    scene = Scene(real_backend, autosave=autosave)
    k, j, i = blob_centre(SHAPE)
    scene.pipeline.submit(Point((k, j, i), True))
    assert not (tmp_path / "auto").exists()
    scene.pipeline.submit(BBox(((k, k + 1), (j - 6, j + 6), (i - 6, i + 6)), True))
    autosaved = list((tmp_path / "auto").glob("*.history.json"))
    assert len(autosaved) == 1 and h.load(autosaved[0]).prompt_count() == 2
    exported = export_history(scene.segmentation, scene.segment_id, tmp_path / "tumour.history.json")
    assert h.load(exported).final_digest == h.mask_digest(scene.mask())
    other = Scene(real_backend)
    other.pipeline.submit(ReplayRequest(h.load(exported)))
    np.testing.assert_array_equal(other.mask(), scene.mask())
    assert [s.op for s in other.saved().steps] == ["prompt", "prompt"]
    wrong = Scene(real_backend, image=mr_like_image(SHAPE, seed=9))
    with pytest.raises(Exception, match="made on another image"):
        wrong.pipeline.submit(ReplayRequest(h.load(exported)))
    assert not wrong.mask().any()


def test_histories_of_deleted_segments_are_not_listed(real_backend):
    scene = Scene(real_backend)
    scene.pipeline.submit(Point(blob_centre(SHAPE), True))
    scene.segmentation.GetSegmentation().RemoveSegment(scene.segment_id)
    assert segments_with_history(scene.segmentation) == []


def test_another_backend_starts_a_new_history_and_an_empty_ending_is_not_replayed(real_backend):
    scene = Scene(real_backend)
    for prompt in PROMPTS[:2]:
        scene.pipeline.submit(prompt)
    before = scene.mask()
    scene.pipeline.backend = real_backend  # e.g. the user picked another backend in the Configuration tab
    scene.pipeline.submit(Point(blob_centre(SHAPE), True))
    saved = scene.saved()
    assert saved.backend == "local" and [s.op for s in saved.steps] == ["prompt"]
    assert h.mask_digest(saved.initial_mask) == h.mask_digest(before)

    emptied = h.loads(scene.segmentation.GetAttribute(attribute_name(scene.segment_id)))
    emptied.steps.append(h.Step("reset", h.StepResult(h.mask_digest(np.zeros(SHAPE, np.uint8)))))
    fresh = Scene(real_backend)  # an empty segment whose id carries a history that ended empty
    fresh.segmentation.SetAttribute(attribute_name(fresh.segment_id), h.dumps(emptied))
    outcome = fresh.pipeline.submit(Point(blob_centre(SHAPE), True))
    assert fresh.backend.calls["prompt"] == 1 and "stays as saved" not in outcome.message
    assert [s.op for s in fresh.saved().steps] == ["prompt"] and fresh.saved().initial_mask is None


class ThreadWatch:
    """Wraps a module (hashlib, zlib) and notes which threads call its functions."""

    def __init__(self, module, threads: set[str]) -> None:
        self._module, self._threads = module, threads

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if not callable(value) or isinstance(value, type):
            return value

        def watched(*args, **kwargs):
            self._threads.add(threading.current_thread().name)
            return value(*args, **kwargs)
        return watched


def test_histories_are_hashed_encoded_and_parsed_only_on_the_worker_thread(real_backend, tmp_path, monkeypatch):
    """Issue 20 #5: on a CT-sized segment each digest or encode costs the GUI tens of ms; the main thread
    only stores finished text (SetAttribute) and autosaves."""
    threads: set[str] = set()
    monkeypatch.setattr(codec, "hashlib", ThreadWatch(codec.hashlib, threads))
    monkeypatch.setattr(codec, "zlib", ThreadWatch(codec.zlib, threads))
    scene = Scene(real_backend)
    logic = SlicerNNInteractiveLogic()
    logic.autosave = HistoryAutosave(tmp_path, every=1)
    logic.use_scene(scene.s.scene, scene.editor, scene.s.app_logic)
    logic.use_backend(scene.backend)

    def drive(*items) -> list[str]:
        for item in items:
            logic.enqueue(QueuedPrompt(item))
        texts = []
        while logic.busy:
            texts += [event.text for event in logic.poll() if event.kind == "status"]
        return texts

    drive(PROMPTS[0], PROMPTS[1])
    logic.undo()  # the host's Undo button
    drive()
    assert logic.capabilities == real_backend.capabilities()
    hand = scene.mask()
    hand[5:8, 5:8, 5:8] = 1
    g = VolumeGeometry.from_volume_node(scene.volume)
    logic.pipeline.writer.write(scene.segmentation, scene.segment_id, index_to_segmentation(g, scene.segmentation),
                                full_box(SHAPE), hand)
    drive(PROMPTS[2])  # the hand edit: the whole mask is a step
    logic.use_scene(scene.s.scene, scene.editor, scene.s.app_logic)  # the scene reopened: its history resumed
    texts = drive(PROMPTS[3])
    logic.close()
    callers = set(threads)
    assert [s.op for s in scene.saved().steps] == ["prompt", "prompt", "undo", "set_mask", "prompt", "prompt"]
    assert not any("stays as saved" in t or "cannot be used" in t for t in texts)
    assert len(list(tmp_path.glob("*.history.json"))) == 1
    assert callers and threading.main_thread().name not in callers, callers
