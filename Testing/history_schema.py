"""Every history the tests write is checked against the published JSON Schema.

:func:`install` wraps :func:`nninteractive_slicer.history.io.to_dict`, through which every writer
(file, text, Slicer scene) goes, so a history that drifts from ``schema.json`` fails the test that wrote it.
"""

from __future__ import annotations

import jsonschema_rs

from nninteractive_slicer.history import io

VALIDATOR = jsonschema_rs.validator_for(io.schema())
validated = {"count": 0}


def check(data: dict) -> None:
    """Raise AssertionError listing every schema violation of ``data``."""
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in VALIDATOR.iter_errors(data)]
    assert not errors, "history does not match schema.json:\n" + "\n".join(errors[:20])


def install() -> None:
    original = io.to_dict

    def to_dict_checked(history):
        data = original(history)
        check(data)
        validated["count"] += 1
        return data

    io.to_dict = to_dict_checked
