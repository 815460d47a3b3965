"""The Configuration tab's backend choice: built by name, API key kept out of every description."""

from __future__ import annotations

import logging

import pytest
import slicer_scene  # noqa: F401 (puts the module folder on sys.path)

from SlicerNNInteractiveLib.backends import BackendConfig, build_backend, describe, missing_requirements

SECRET = "s3cr3t-key-value"


def test_the_api_key_never_appears_in_descriptions_or_logs(caplog):
    config = BackendConfig("slicer_server", "http://127.0.0.1:9", SECRET)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("starting %s / %r", describe(config), config)
    assert SECRET not in caplog.text
    assert "with an API key" in describe(config)


def test_backends_are_built_by_name(tiny_model_dir):
    remote = build_backend(BackendConfig("slicer_server", "http://127.0.0.1:9", SECRET, timeout=1.0))
    assert type(remote).__name__ == "SlicerServerBackend"
    remote.close()
    local = build_backend(BackendConfig("local", device="cpu", model=str(tiny_model_dir)))
    try:
        assert local.capabilities().model_id == "tiny"
    finally:
        local.close()
    with pytest.raises(ValueError, match="Unknown backend kind"):
        build_backend(BackendConfig("nonsense"))


def test_requirements_are_complete_in_the_test_environment():
    assert missing_requirements("local") == []
    assert missing_requirements("slicer_server") == []
    assert missing_requirements("official") == []
