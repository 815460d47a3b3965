"""What the local backend adds to the contract: one device thread, seeded prompts, OOM safety, model lookup."""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import blob_centre, prompt_script

from nninteractive_slicer.backends.local import LocalBackend
from nninteractive_slicer.engine.model_loading import choose_device
from nninteractive_slicer.errors import BackendUnavailableError, OutOfMemoryError, UndoError
from nninteractive_slicer.interface import Point, UndoState, changed_box

SESSION_METHODS = ("set_image", "add_point_interaction", "add_initial_seg_interaction", "reset_interactions")


@pytest.fixture
def backend(local_backend_factory):
    backend = local_backend_factory()
    yield backend
    backend.close()


def test_all_session_calls_run_on_one_persistent_thread(backend, image64, monkeypatch):
    session = backend._engine.inner
    calls: dict[str, int] = {}
    for name in SESSION_METHODS:
        original = getattr(session, name)

        def record(*args, _original=original, _name=name, **kwargs):
            calls[_name] = threading.get_ident()
            return _original(*args, **kwargs)

        monkeypatch.setattr(session, name, record)
    backend.set_image(image64)
    backend.set_initial_mask(np.zeros(image64.shape, np.uint8))
    future = backend.start(backend.prompt, Point(blob_centre(image64.shape)))  # as the GUI does
    assert future.result(timeout=120).changed
    backend.undo()
    backend.reset()
    assert set(calls) == set(SESSION_METHODS)
    assert len(set(calls.values())) == 1
    assert threading.get_ident() not in calls.values()


def test_each_prompt_runs_with_numpy_seeded_by_its_index(backend, image64, monkeypatch):
    """nnInteractive's refinement planner may draw from numpy's global RNG: what it draws inside a prompt must
    not depend on history or on the caller's RNG, and the caller's stream is left as it was."""
    from nnInteractive.inference import inference_session

    session = backend._engine.inner
    draws: list[list] = []
    original = session.add_point_interaction
    sparse = torch.from_numpy(np.random.default_rng(3).random((24, 24, 24)) > 0.97)

    def drawing(*args, **kwargs):  # the planner on its random fallback, as the prompt's refinement would call it
        draws.append(inference_session.generate_bounding_boxes(sparse.clone(), (6, 6, 6), margin=(1, 1, 1),
                                                               max_depth=-1))
        return original(*args, **kwargs)

    monkeypatch.setattr(session, "add_point_interaction", drawing)
    point = Point(blob_centre(image64.shape))
    runs = []
    for caller_seed in (1, 2):
        np.random.seed(caller_seed)
        caller_next = np.random.random()
        np.random.seed(caller_seed)
        backend.set_image(image64)
        draws.clear()
        backend.prompt(point)
        backend.prompt(point)
        runs.append(list(draws))
        assert np.random.random() == caller_next  # the caller's RNG stream is left as it was
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[0][1]  # seeded by the prompt's index in the object


def test_results_are_the_tight_box_of_what_changed(backend, image64):
    """nnInteractive reports the whole box it wrote; the result shrinks it to the voxels that differ."""
    backend.set_image(image64)
    mirror = np.zeros(image64.shape, np.uint8)
    shrunk = 0
    for prompt in prompt_script(image64.shape, seed=4, count=6) + ["undo"]:
        before = mirror.copy()
        result = backend.undo() if prompt == "undo" else backend.prompt(prompt)
        result.apply_to(mirror)
        assert result.box == changed_box(before, mirror)
        shrunk += result.changed and result.patch.size < 64**3
    assert shrunk > 0


def model_state(backend: LocalBackend) -> tuple:
    """Everything of the nnInteractive session that undo snapshots hold, and the next prompt's seed."""
    session = backend._engine.inner
    return (session.interactions.numpy().tobytes(), session.target_buffer.tobytes(),
            session.current_interaction_intensity, sorted(session._dirty_channels), backend.prompt_count)


def test_undo_and_redo_restore_the_model_state_of_a_fresh_session(local_backend_factory, image64):
    script = prompt_script(image64.shape, seed=8, count=4)
    backend, fresh = local_backend_factory(), local_backend_factory()
    try:
        backend.set_image(image64)
        for prompt in script:
            backend.prompt(prompt)
        after_all = model_state(backend)
        backend.reset()
        fresh.set_image(image64)
        backend.undo(5)
        assert model_state(backend) == model_state(fresh)
        for kept in (2, 4):
            backend.redo(2)
            fresh.prompt(script[kept - 2])
            fresh.prompt(script[kept - 1])
            assert model_state(backend) == model_state(fresh)
        assert model_state(backend) == after_all
        backend.redo()
        fresh.reset()
        assert model_state(backend) == model_state(fresh)
    finally:
        backend.close()
        fresh.close()


def test_history_keeps_the_newest_steps_within_steps_and_memory(tiny_model_dir, image64):
    point = Point(blob_centre(image64.shape))
    with LocalBackend(model_dir=tiny_model_dir, device="cpu", torch_threads=2, undo_steps=2) as backend:
        assert backend.capabilities().undo_depth == 2
        backend.set_image(image64)
        masks = [backend.get_mask()]
        for prompt in [point, *prompt_script(image64.shape, seed=1, count=2)]:
            backend.prompt(prompt)
            masks.append(backend.get_mask())
        assert backend.undo_state() == UndoState(undo=2, redo=0)
        with pytest.raises(UndoError, match="at most 2"):
            backend.undo(3)
        backend.undo(2)
        np.testing.assert_array_equal(backend.get_mask(), masks[1])
        with pytest.raises(UndoError, match="nothing to undo.*memory budget"):
            backend.undo()  # the first step was evicted
    with LocalBackend(model_dir=tiny_model_dir, device="cpu", torch_threads=2, undo_budget_bytes=1) as backend:
        backend.set_image(image64)
        backend.prompt(point)
        assert backend.undo_state() == UndoState(undo=0, redo=0)  # not even one snapshot fits: no undo, no error
        assert backend.prompt(point).backend_ms > 0


def test_a_snapshot_that_fails_costs_the_undo_history_never_the_result(backend, image64, monkeypatch):
    """The snapshot is taken after the reply: when it fails (no RAM), the user keeps the result, undo starts again
    from there, and an undo past it is a clear error that changes nothing."""
    script = prompt_script(image64.shape, seed=3, count=4)
    backend.set_image(image64)
    backend.prompt(script[0])

    def fail(session):
        raise MemoryError("no RAM for the snapshot")

    monkeypatch.setattr("nninteractive_slicer.engine.engine.take_snapshot", fail)
    mirror = backend.get_mask()
    backend.prompt(script[1]).apply_to(mirror)
    assert backend.undo_state() == UndoState(undo=0, redo=0)
    np.testing.assert_array_equal(backend.get_mask(), mirror)
    with pytest.raises(UndoError, match="nothing to undo"):
        backend.undo()
    np.testing.assert_array_equal(backend.get_mask(), mirror)
    monkeypatch.undo()
    backend.prompt(script[2]).apply_to(mirror)  # the history starts again from the first step snapshotted
    after_third = mirror.copy()
    backend.prompt(script[3]).apply_to(mirror)
    assert backend.undo_state() == UndoState(undo=1, redo=0)
    backend.undo().apply_to(mirror)
    np.testing.assert_array_equal(mirror, after_third)
    np.testing.assert_array_equal(backend.get_mask(), mirror)


@pytest.mark.parametrize("kind", ["local", "remote"])
def test_the_undo_snapshot_is_taken_after_the_reply(request, kind, image64, monkeypatch):
    """Snapshotting a large image takes tens of milliseconds: the reply does not wait for it, the next call does."""
    from nninteractive_slicer.engine import engine

    taken, release = threading.Event(), threading.Event()
    snapshot = engine.take_snapshot

    def held(session):
        release.wait(60)
        taken.set()
        return snapshot(session)

    with request.getfixturevalue(f"{kind}_backend_factory")() as backend:
        backend.set_image(image64)
        mirror = np.zeros(image64.shape, np.uint8)
        monkeypatch.setattr(engine, "take_snapshot", held)
        try:
            backend.prompt(Point(blob_centre(image64.shape))).apply_to(mirror)
            assert not taken.is_set(), "the prompt's reply waited for its undo snapshot"
        finally:
            release.set()
        assert backend.undo_state() == UndoState(undo=1, redo=0)
        backend.undo().apply_to(mirror)
        assert not mirror.any()
        np.testing.assert_array_equal(backend.get_mask(), mirror)


def test_out_of_memory_leaves_mask_untouched_and_backend_usable(backend, image64, monkeypatch):
    backend.set_image(image64)
    point = Point(blob_centre(image64.shape))
    backend.prompt(point)
    before = backend.get_mask()
    session = backend._engine.inner
    original = session.add_point_interaction
    monkeypatch.setattr(session, "add_point_interaction", lambda *a, **k: (_ for _ in ()).throw(
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")))
    with pytest.raises(OutOfMemoryError, match="ran out of memory"):
        backend.prompt(Point(blob_centre(image64.shape), positive=False))
    np.testing.assert_array_equal(backend.get_mask(), before)
    monkeypatch.setattr(session, "add_point_interaction", original)
    assert backend.prompt(Point(blob_centre(image64.shape), positive=False)).backend_ms > 0


def test_a_closed_backend_refuses_calls_instead_of_hanging(local_backend_factory, image64):
    backend = local_backend_factory()
    backend.close()
    backend.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        backend.set_image(image64)


def assert_device_choice(has_cuda: bool) -> None:
    """``auto`` takes CUDA silently where there is a GPU, else the CPU with a warning; explicit choices as given."""
    if has_cuda:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert choose_device("auto").type == "cuda"
        assert choose_device("cuda:0") == torch.device("cuda:0")
    else:
        with pytest.warns(UserWarning, match="runs on the CPU"):
            assert choose_device("auto").type == "cpu"
        with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
            choose_device("cuda")
    assert choose_device("cpu").type == "cpu"
    with pytest.raises(BackendUnavailableError, match="not supported|Unknown device"):
        choose_device("mps")


def test_device_choice_on_this_host():
    assert_device_choice(torch.cuda.is_available())


@pytest.mark.parametrize("has_cuda", [True, False], ids=["cuda-host", "cpu-host"])
def test_device_choice_on_either_kind_of_host(monkeypatch, has_cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_cuda)
    assert_device_choice(has_cuda)


def test_folder_without_model_names_the_fix(tmp_path):
    with pytest.raises(BackendUnavailableError, match="model-dir"):
        LocalBackend(model_dir=tmp_path, device="cpu")


class FakeHub:
    """Hugging Face at the network boundary: serves a manifest and copies the tiny model as a 'download'."""

    MODEL_ID = "nnInteractive_v9.9"

    def __init__(self, model_dir: Path, online: bool = True) -> None:
        self.model_dir, self.online, self.downloads = model_dir, online, 0

    def hf_hub_download(self, repo_id, repo_type, filename, cache_dir):
        if not self.online:
            raise ConnectionError("huggingface.co is unreachable")
        path = Path(cache_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"id": self.MODEL_ID, "display_name": "Test", "path": self.MODEL_ID, "default": True}
        path.write_text(json.dumps({"schema_version": 1, "models": [entry]}))
        return str(path)

    def snapshot_download(self, repo_id, repo_type, allow_patterns, local_dir):
        if not self.online:
            raise ConnectionError("huggingface.co is unreachable")
        self.downloads += 1
        shutil.copytree(self.model_dir, Path(local_dir) / self.MODEL_ID)
        return local_dir


def test_official_model_is_downloaded_once_then_used_offline(tiny_model_dir, tmp_path, monkeypatch, image64):
    import huggingface_hub

    hub = FakeHub(tiny_model_dir)
    monkeypatch.setenv("NNINTERACTIVE_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    with LocalBackend(device="cpu", torch_threads=2) as backend:  # the recommended model, by official id
        assert backend.capabilities().model_id == FakeHub.MODEL_ID
        backend.set_image(image64)
        assert backend.prompt(Point(blob_centre(image64.shape))).changed
    hub.online = False
    with LocalBackend(FakeHub.MODEL_ID, device="cpu", torch_threads=2) as backend:
        assert backend.capabilities().model_id == FakeHub.MODEL_ID
    assert hub.downloads == 1


def test_unreachable_hub_says_how_to_pass_a_model_folder(tiny_model_dir, tmp_path, monkeypatch):
    import huggingface_hub

    hub = FakeHub(tiny_model_dir, online=False)
    monkeypatch.setenv("NNINTERACTIVE_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    with pytest.raises(BackendUnavailableError, match="could not be downloaded.*--model-dir"):
        LocalBackend(device="cpu")
