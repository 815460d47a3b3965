"""The history file: written, validated against schema.json, read back exactly, and refused when it is not one.

Histories here are recorded from the real local backend (tiny model) running all prompt kinds,
undo, reset and a restart from a mask, so every step type reaches the file.
"""

from __future__ import annotations

import json

import history_schema
import numpy as np
import pytest
from synthetic import prompt_script

from nninteractive_slicer import history as h
from nninteractive_slicer.interface import Point

INDEX_TO_RAS = np.array([[0.0, 0.0, -0.8, 10.0], [0.0, -0.9, 0.0, 20.0], [1.5, 0.0, 0.0, -5.0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def backend(local_backend_factory):
    backend = local_backend_factory()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def recorded(backend, image64) -> h.History:
    """All four prompt kinds, positive and negative, an undo, a restart from a mask and a reset."""
    identity = h.ImageIdentity.of(image64, INDEX_TO_RAS)
    backend.set_image(image64, identity.spacing)
    recorder = h.HistoryRecorder(identity, h.ModelIdentity("tiny", "2.6", None), "local", name="blob")
    for prompt in prompt_script(image64.shape, seed=3, count=5):
        recorder.prompted(prompt, backend.prompt(prompt))
    recorder.undone(backend.undo())
    start = np.zeros(image64.shape, np.uint8)
    start[20:30, 20:30, 20:30] = 1
    backend.set_initial_mask(start)
    recorder.mask_set(start)
    point = Point((25, 25, 25), True)
    recorder.prompted(point, backend.prompt(point))
    np.testing.assert_array_equal(recorder.mask, backend.get_mask())
    return recorder.history


def test_round_trip_is_exact(recorded, tmp_path):
    path = tmp_path / "blob.history.json"
    before = history_schema.validated["count"]
    h.save(recorded, path)
    assert history_schema.validated["count"] == before + 1  # the schema check saw this file
    loaded = h.load(path)
    assert h.dumps(loaded) == h.dumps(recorded)
    assert [s.op for s in loaded.steps] == ["prompt"] * 5 + ["undo", "set_mask", "prompt"]
    assert loaded.image.shape == (64, 64, 64) and np.allclose(loaded.image.index_to_ras, INDEX_TO_RAS)
    for a, b in zip(loaded.steps, recorded.steps):
        assert type(a.prompt) is type(b.prompt)
        if a.result.patch is not None:
            np.testing.assert_array_equal(a.result.patch, b.result.patch)


def test_file_lists_axes_as_ijk_and_world_ras(recorded):
    data = json.loads(h.dumps(recorded))
    point = next(s for s in data["steps"] if s.get("kind") == "point")
    kji = next(s.prompt.coord for s in recorded.steps if getattr(s.prompt, "kind", None) == "point")
    assert point["ijk"] == list(kji[::-1])
    expected_ras = (INDEX_TO_RAS @ np.r_[kji, 1.0])[:3]
    assert np.allclose(point["ras"], expected_ras, atol=1e-4)
    ijk_to_ras = np.array(data["image"]["ijk_to_ras"])
    assert np.allclose((ijk_to_ras @ np.r_[point["ijk"], 1.0])[:3], expected_ras)


def test_replay_on_a_fresh_backend_is_bit_identical(recorded, local_backend_factory, image64):
    with local_backend_factory() as backend:
        report = h.replay(h.loads(h.dumps(recorded)), backend, image64)
    assert report.identical and len(report.steps) == len(recorded.steps)
    assert h.mask_digest(report.mask) == recorded.final_digest


def test_replay_refuses_another_image_before_any_model_call(recorded, image64):
    class NoModel:
        name = "none"

        def set_image(self, *args):
            raise AssertionError("model time spent")

    other = image64.copy()
    other[0, 0, 0] += 1
    with pytest.raises(h.HistoryMismatchError, match="voxels differ"):
        h.replay(recorded, NoModel(), other)  # type: ignore[arg-type]


def _broken(recorded, change) -> str:
    data = json.loads(h.dumps(recorded))
    change(data)
    return json.dumps(data)


def _set(path: str, value):
    def change(data):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is KeyError:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return change


@pytest.mark.parametrize(("change", "message"), [
    (_set("version", 2), r"version 2 cannot be read; this package reads version 1\. .*newer"),
    (_set("version", 0), r"version 0 cannot be read"),
    (_set("version", "1"), r"version '1' cannot be read"),
    (_set("version", KeyError), r"version None cannot be read"),
    (_set("format", "something-else"), r"not an nnInteractive segment history"),
    (_set("image.size", [64, 64]), r"image\.size: must be 3 whole numbers"),
    (_set("image.ijk_to_ras.2", [0, 0, 0, 1]), r"image\.ijk_to_ras.*singular"),
    (_set("steps.0.op", "paint"), r"steps\[0\]\.op: 'paint' is not one of"),
    (_set("steps.0.kind", "circle"), r"steps\[0\]\.kind: 'circle'"),
    (_set("steps.0.ijk", [64, 1, 1]), r"steps\[0\]\.ijk: \[64, 1, 1\] lies outside the image"),
    (_set("steps.1.box", [[0, 70], [1, 2], [3, 4]]), r"steps\[1\]\.box: .* does not lie inside"),
    (_set("steps.2.bits", "not base64!"), r"steps\[2\]\.bits: not base64"),
    (_set("steps.0.positive", "yes"), r"steps\[0\]\.positive: must be true or false"),
    (_set("steps.0.extra", 1), r"steps\[0\]: has unknown field\(s\) extra"),
    (_set("steps.0.result.mask_digest", "md5:00"), r"mask_digest: must be 'sha256:'"),
    (_set("steps.6.mask.digest", "sha256:" + "0" * 64), r"steps\[6\]\.mask: its bits do not match its digest"),
    (_set("steps.0.result.bits", None), r"steps\[0\]\.result: box and bits must both be given"),
])
def test_malformed_histories_get_a_clear_error(recorded, change, message):
    text = _broken(recorded, change)
    with pytest.raises(h.HistoryFormatError, match=message):
        h.loads(text, "x.json")
    assert "x.json" in str(pytest.raises(h.HistoryFormatError, h.loads, text, "x.json").value)


def test_not_json_names_the_line():
    with pytest.raises(h.HistoryFormatError, match=r"h\.json: not JSON \(line 2"):
        h.loads('{"format":\n oops}', "h.json")


def test_schema_rejects_what_the_reader_rejects(recorded):
    """The published schema is not looser than the reader on the basics (version, step shape)."""
    for change in (_set("version", 2), _set("steps.0.kind", "circle"), _set("steps.0.extra", 1)):
        with pytest.raises(AssertionError):
            history_schema.check(json.loads(_broken(recorded, change)))


def test_a_history_of_the_servers_former_kind_reads_as_its_current_one(recorded):
    """Histories written when this project's server was the kind "remote" name it as today."""
    data = json.loads(h.dumps(recorded))
    data["backend"] = "remote"
    assert h.loads(json.dumps(data)).backend == "slicer_server"
    assert h.loads(h.dumps(recorded)).backend == recorded.backend
