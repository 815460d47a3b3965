"""The extension's description for today's Slicer Extensions Index (NNInteractive.json), checked as the index does.

The schema below restates the facts of the index's catalog-entry schema v1.0.2 (Slicer/ExtensionsIndex,
schemas/): required keys, the only keys allowed and their types. The other checks are those of the
index's description-file checker: the file name is the extension name, which must not begin with
"Slicer" and must be the top-level CMake project; the repository name does begin with "Slicer"; the
category is the one CMake declares; build dependencies are CMake's EXTENSION_DEPENDS; LF line endings;
a license file at the root.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[1]
DESCRIPTIONS = [p for p in REPO.glob("*.json")]
SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"

CATALOG_ENTRY_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "dicom_support_rule": {"type": "string"},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}


def cmake_setting(name: str) -> str:
    match = re.search(rf'set\({name} "([^"]*)"\)', (REPO / "CMakeLists.txt").read_text())
    assert match, f"{name} is not set in CMakeLists.txt"
    return match.group(1)


@pytest.fixture(scope="module")
def description() -> tuple[str, dict]:
    assert [p.name for p in DESCRIPTIONS] == ["NNInteractive.json"], "one description file at the root"
    path = DESCRIPTIONS[0]
    assert b"\r" not in path.read_bytes(), "the index accepts LF line endings only"
    return path.stem, json.loads(path.read_text())


def test_the_description_follows_the_catalog_entry_schema(description):
    _name, entry = description
    jsonschema.Draft7Validator(CATALOG_ENTRY_SCHEMA).validate(entry)
    assert entry["$schema"] == SCHEMA_URL


def test_the_schema_restated_here_rejects_what_the_index_rejects():
    validator = jsonschema.Draft7Validator(CATALOG_ENTRY_SCHEMA)
    good = {"$schema": SCHEMA_URL, "category": "Segmentation", "scm_url": "https://github.com/a/SlicerB.git"}
    assert validator.is_valid(good)
    for bad in ({k: v for k, v in good.items() if k != "scm_url"}, {**good, "depends": ["PyTorch"]},
                {**good, "tier": 6}, {**good, "build_dependencies": "PyTorch"}, {**good, "scm_type": "svn"}):
        assert not validator.is_valid(bad), bad


def test_the_name_is_the_cmake_project_and_does_not_begin_with_slicer(description):
    name, _entry = description
    assert not name.lower().startswith("slicer")
    project = re.search(r"^project\(\s*([^\s)]+)", (REPO / "CMakeLists.txt").read_text(), re.MULTILINE)
    assert project and project.group(1) == name


def test_the_description_agrees_with_cmake(description):
    _name, entry = description
    depends = cmake_setting("EXTENSION_DEPENDS")
    assert entry["build_dependencies"] == ([] if depends == "NA" else depends.split())
    assert entry["category"] == cmake_setting("EXTENSION_CATEGORY")
    assert entry["build_subdirectory"] == "."
    url = urlsplit(entry["scm_url"])
    assert url.scheme in ("https", "git")
    assert Path(url.path).stem.startswith("Slicer"), "the index wants the repository name to begin with Slicer"
    assert cmake_setting("EXTENSION_HOMEPAGE").rstrip("/") == entry["scm_url"].removesuffix(".git")


def test_a_license_file_at_the_root_matches_the_package_license():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0" in text
    assert 'license = "Apache-2.0"' in (REPO / "pyproject.toml").read_text()


def test_the_cmake_minimum_matches_slicer_5_10s_extension_template():
    first = (REPO / "CMakeLists.txt").read_text().splitlines()[0]
    assert first == "cmake_minimum_required(VERSION 3.20.6...3.22.6 FATAL_ERROR)"
