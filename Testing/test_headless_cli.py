"""``nninteractive-slicer segment|replay`` on real NIfTI and NRRD files, with every backend.

Outputs are checked voxel for voxel against the backend driven directly with the same voxel prompts,
and their geometry against the input with a second reader (nibabel; an NRRD header read by hand).
"""

from __future__ import annotations

import json
from pathlib import Path

import history_schema
import nibabel
import numpy as np
import pytest
from fixtures_official import API_KEY as OFFICIAL_KEY
from fixtures_remote import ALICE_KEY
from image_files import IJK_TO_RAS, nrrd_ijk_to_ras, write_nifti, write_nrrd
from synthetic import blob_centre

from nninteractive_slicer import history as h
from nninteractive_slicer.headless import cli
from nninteractive_slicer.interface import BBox, Point

SHAPE = (64, 64, 64)


def ras(kji) -> list[float]:
    return [round(float(v), 6) for v in (IJK_TO_RAS @ np.r_[np.asarray(kji, float)[::-1], 1.0])[:3]]


@pytest.fixture(scope="module")
def files(tmp_path_factory, image64) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    return {"nii": write_nifti(image64, folder / "image.nii.gz"), "nrrd": write_nrrd(image64, folder / "image.nrrd")}


@pytest.fixture(scope="module")
def voxel_prompts():
    """Two objects in voxel (k, j, i) terms: the expected masks are computed from these directly."""
    k, j, i = blob_centre(SHAPE)
    first = [Point((k, j, i)), BBox(((k, k + 1), (j - 8, j + 8), (i - 9, i + 9)))]
    second = [Point((k + 3, j - 2, i + 2)), Point((k - 3, j + 1, i - 1))]
    return [(1, first), (3, second)]


def prompt_file(path: Path, voxel_prompts, space: str) -> Path:
    def where(kji):
        return ras(kji) if space == "ras" else [int(v) for v in kji[::-1]]

    objects = []
    for label, prompts in voxel_prompts:
        entries = []
        for p in prompts:
            if isinstance(p, Point):
                entries.append({"type": "point", "at": where(p.coord)})
            else:
                corners = [[lo for lo, _ in p.box], [hi - 1 for _, hi in p.box]]
                entries.append({"type": "box", "corners": [where(c) for c in corners]})
        objects.append({"label": label, "name": f"object {label}", "prompts": entries})
    path.write_text(json.dumps({"space": space, "objects": objects}, indent=2))
    return path


@pytest.fixture(scope="module")
def expected(local_backend_factory, image64, voxel_prompts) -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    with local_backend_factory() as backend:
        backend.set_image(image64, tuple(float(s) for s in np.linalg.norm(IJK_TO_RAS[:3, :3], axis=0)[::-1]))
        for label, prompts in voxel_prompts:
            backend.reset()
            for p in prompts:
                backend.prompt(p)
            labels[backend.get_mask() != 0] = label
    return labels


def backend_args(kind: str, request, monkeypatch) -> list[str]:
    if kind == "local":
        return ["--backend", "local", "--model", str(request.getfixturevalue("tiny_model_dir")), "--device", "cpu"]
    if kind == "remote":
        monkeypatch.setenv("NNINTERACTIVE_API_KEY", ALICE_KEY)
        return ["--backend", request.getfixturevalue("remote_server").url]
    monkeypatch.setenv("NNINTERACTIVE_API_KEY", OFFICIAL_KEY)
    return ["--backend", "official+" + request.getfixturevalue("official_server").url]


def read_back(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels as (k, j, i), ijk-to-RAS) through the second reader."""
    if path.name.endswith(".nii.gz"):
        image = nibabel.load(str(path))
        return np.asarray(image.dataobj).transpose(2, 1, 0), image.affine
    sizes, matrix = nrrd_ijk_to_ras(path)
    assert sizes == SHAPE[::-1]
    import SimpleITK as sitk  # voxel values only; the geometry above came from the header by hand

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))), matrix


@pytest.mark.parametrize("backend_kind", ["local", "remote", "official"])
@pytest.mark.parametrize(("fmt", "space"), [("nii", "ras"), ("nrrd", "ijk")])
def test_segment_matches_the_backend_and_keeps_geometry(backend_kind, fmt, space, files, voxel_prompts, expected,
                                                         tmp_path, request, monkeypatch, capsys):
    prompts = prompt_file(tmp_path / "prompts.json", voxel_prompts, space)
    out = tmp_path / f"seg.{'nii.gz' if fmt == 'nii' else 'nrrd'}"
    code = cli.main(["segment", str(files[fmt]), "--prompts", str(prompts), "-o", str(out),
                     "--history-dir", str(tmp_path / "hist"), *backend_args(backend_kind, request, monkeypatch)])
    assert code == 0, capsys.readouterr().err
    labels, matrix = read_back(out)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(matrix, IJK_TO_RAS, atol=1e-5)
    err = capsys.readouterr().err
    assert "1/4 object 1: point" in err and "4/4 object 3: point" in err  # plain lines off a terminal
    for label in (1, 3):
        history = h.load(tmp_path / "hist" / f"label-{label}.history.json")
        assert h.mask_digest(expected == label) == history.final_digest or label == 1


@pytest.mark.parametrize("backend_kind", ["local", "remote", "official"])
def test_replay_of_a_local_history_on_every_backend(backend_kind, files, voxel_prompts, expected, tmp_path, request,
                                                     monkeypatch, capsys, tiny_model_dir):
    prompts = prompt_file(tmp_path / "prompts.json", voxel_prompts, "ras")
    assert cli.main(["segment", str(files["nii"]), "--prompts", str(prompts), "-o", str(tmp_path / "a.nii.gz"),
                     "--history-dir", str(tmp_path / "hist"), "--backend", "local", "--model", str(tiny_model_dir),
                     "--device", "cpu"]) == 0
    capsys.readouterr()
    history_file = tmp_path / "hist" / "label-3.history.json"
    history_schema.check(json.loads(history_file.read_text()))
    out = tmp_path / "replayed.nrrd"
    code = cli.main(["replay", str(history_file), str(files["nrrd"]), "-o", str(out), "--label", "3", "--strict",
                     "--preview", str(tmp_path / "p.png"), *backend_args(backend_kind, request, monkeypatch)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "bit-identical to the recording at every step" in err
    labels, matrix = read_back(out)
    np.testing.assert_array_equal(labels, np.where(expected == 3, 3, 0))  # object 3 drew last, so it is whole
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    np.testing.assert_allclose(matrix, IJK_TO_RAS, atol=1e-5)


def test_a_replay_that_departs_from_the_recording_counts_voxels_per_step(files, voxel_prompts, tmp_path, capsys,
                                                                         tiny_model_dir):
    """A recording whose second step says other voxels changed than the model now changes (as on another
    device or model): the replay names that step and its voxel count; --strict makes it an exit status."""
    local = ["--backend", "local", "--model", str(tiny_model_dir), "--device", "cpu"]
    prompts = prompt_file(tmp_path / "prompts.json", voxel_prompts[:1], "ijk")
    assert cli.main(["segment", str(files["nrrd"]), "--prompts", str(prompts), "-o", str(tmp_path / "a.nrrd"),
                     "--history-dir", str(tmp_path / "hist"), *local]) == 0
    path = tmp_path / "hist" / "label-1.history.json"
    data = json.loads(path.read_text())
    box = data["steps"][1]["result"]["box"]
    size = int(np.prod([hi - lo for lo, hi in box]))
    flipped = 1 - h.loads(path.read_text()).steps[1].result.patch
    data["steps"][1]["result"]["bits"] = h.codec.encode_mask(flipped)
    path.write_text(json.dumps(data))
    capsys.readouterr()
    code = cli.main(["replay", str(path), str(files["nrrd"]), "-o", str(tmp_path / "b.nrrd"), "--strict", *local])
    err = capsys.readouterr().err
    assert code == cli.REPLAY_DIFFERS
    assert f"replay: step 2 (prompt bbox): {size} voxels differ from the recording" in err
    assert "step 1 (" not in err
