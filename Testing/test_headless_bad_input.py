"""Malformed prompt files stop ``nninteractive-slicer segment`` before a backend exists (no model time),
with an error that names the file, the line, the object and the prompt."""

from __future__ import annotations

import io

import pytest
from image_files import IJK_TO_RAS, write_nifti

from nninteractive_slicer.headless import cli
from nninteractive_slicer.headless.progress import Progress


def prompt_text(bad_prompt: str = '{"type": "point", "at": [31, 30, 29]}', space: str = '"ijk"',
                object_head: str = '"label": 1, "name": "liver"') -> str:
    good = [30, 30, 30] if space != '"ras"' else (IJK_TO_RAS @ [30, 30, 30, 1])[:3].round(3).tolist()
    return (
        "{\n"
        f'  "space": {space},\n'
        '  "objects": [\n'
        f"    {{{object_head}, \"prompts\": [\n"
        f'      {{"type": "point", "at": {good}}},\n'
        f"      {bad_prompt}\n"
        "    ]}\n"
        "  ]\n"
        "}\n"
    )


CASES = {
    "not json": ('{"space": "ijk",\n "objects": [\n', "line 3: not valid JSON"),
    "not an object": ("[1, 2]", "must hold one JSON object"),
    "missing space": ('{\n "objects": []\n}', "line 1: lacks 'space'"),
    "unknown space": (prompt_text(space='"lps"'), "line 1, space: 'lps' is not one of ras, ijk"),
    "unknown field": (prompt_text('{"type": "point", "at": [1, 2, 3], "postive": false}'),
                      "line 6, object 1 (liver), prompt 2 (point): has unknown field(s) 'postive'"),
    "unknown type": (prompt_text('{"type": "circle", "at": [1, 2, 3]}'),
                     "line 6, object 1 (liver), prompt 2: unknown type 'circle'; use one of point, box"),
    "voxel outside": (prompt_text('{"type": "point", "at": [64, 10, 10]}'),
                      "line 6, object 1 (liver), prompt 2 (point): voxel index [64, 10, 10] lies outside the image "
                      "of size [64, 64, 64]"),
    "ras outside": (prompt_text('{"type": "point", "at": [500.0, 0, 0]}', space='"ras"'),
                    "line 6, object 1 (liver), prompt 2 (point): RAS point (voxel"),
    "two numbers": (prompt_text('{"type": "point", "at": [10, 10]}'),
                    "prompt 2 (point): [10, 10] is not three numbers"),
    "fractional voxel": (prompt_text('{"type": "point", "at": [10.5, 10, 10]}'),
                         "[10.5, 10, 10] is not a voxel index"),
    "positive not bool": (prompt_text('{"type": "point", "at": [1, 2, 3], "positive": "no"}'),
                          "positive must be true or false, got 'no'"),
    "box on no slice": (prompt_text('{"type": "box", "corners": [[10, 10, 10], [20, 20, 20]]}'),
                        "line 6, object 1 (liver), prompt 2 (box): its points do not lie on one slice"),
    "box three corners": (prompt_text('{"type": "box", "corners": [[1, 1, 1], [2, 2, 1], [3, 3, 1]]}'),
                          "corners must be a list of exactly 2 corners"),
    "lasso two points": (prompt_text('{"type": "lasso", "points": [[1, 1, 5], [9, 9, 5]]}'),
                         "prompt 2 (lasso): points must be a list of at least 3 points"),
    "scribble off slice": (prompt_text('{"type": "scribble", "points": [[1, 1, 5], [9, 9, 6]]}'),
                           "prompt 2 (scribble): its points do not lie on one slice"),
    "label zero": (prompt_text(object_head='"label": 0'), "line 4, object 1: label must be a whole number from 1"),
    "no prompts": ('{"space": "ijk", "objects": [\n {"label": 2, "prompts": []}]}',
                   "line 2, object 1 (label 2): prompts must be a non-empty list"),
    "duplicate label": ('{"space": "ijk", "objects": [\n {"label": 2, "prompts": [{"type": "point", "at": [1,1,1]}]},\n'
                        ' {"label": 2, "prompts": [{"type": "point", "at": [2,2,2]}]}]}',
                        "line 3, object 2: label 2 is already used by object 1"),
}


@pytest.fixture(scope="module")
def image_file(tmp_path_factory, image64):
    return write_nifti(image64, tmp_path_factory.mktemp("bad") / "image.nii.gz")


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to make a backend (load a model, contact a server) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a backend was made: model time was spent on bad input")

    monkeypatch.setattr(cli, "make_backend", refuse)


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_prompt_file_is_refused_before_any_model_time(case, image_file, tmp_path, no_model, capsys):
    text, message = CASES[case]
    path = tmp_path / "prompts.json"
    path.write_text(text)
    code = cli.main(["segment", str(image_file), "--prompts", str(path), "-o", str(tmp_path / "seg.nii.gz")])
    err = capsys.readouterr().err
    assert code == cli.BAD_INPUT
    assert f"error: {path}" in err and message in err, err
    assert not (tmp_path / "seg.nii.gz").exists()


def test_bad_backend_and_missing_files_are_refused_up_front(image_file, tmp_path, no_model, capsys):
    prompts = tmp_path / "p.json"
    prompts.write_text(prompt_text())
    out = ["-o", str(tmp_path / "seg.nii.gz")]
    assert cli.main(["segment", str(image_file), "--prompts", str(prompts), *out, "--backend", "gpu"]) == cli.BAD_INPUT
    assert "--backend 'gpu': use 'local', a server URL" in capsys.readouterr().err
    assert cli.main(["segment", str(tmp_path / "none.nii"), "--prompts", str(prompts), *out]) == cli.BAD_INPUT
    assert "none.nii: cannot be read as an image" in capsys.readouterr().err
    assert cli.main(["replay", str(prompts), str(image_file), *out]) == cli.BAD_INPUT
    assert "not an nnInteractive segment history" in capsys.readouterr().err


def test_api_key_is_not_taken_from_the_command_line(image_file, tmp_path):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["segment", str(image_file), "--prompts", "p", "-o", "o", "--api-key", "k"])


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere():
    bar, lines = io.StringIO(), io.StringIO()
    for stream, tty in ((bar, True), (lines, False)):
        progress = Progress(stream, tty)
        progress.step(1, 2, "object 1: point")
        progress.step(2, 2, "object 1: box")
    assert bar.getvalue().startswith("\r[" + "#" * 15 + "." * 15 + "] 1/2 object 1: point")
    assert bar.getvalue().endswith("\n") and bar.getvalue().count("\n") == 1
    assert lines.getvalue() == "1/2 object 1: point\n2/2 object 1: box\n"
