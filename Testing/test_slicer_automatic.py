"""The Automatic backend choice: local where a CUDA GPU and the local backend are, else the server; macOS goes
to the server; and which failures of the local backend a server would not have."""

from __future__ import annotations

from dataclasses import replace

import pytest
import slicer_scene  # noqa: F401 (puts the module folder on sys.path)

from nninteractive_slicer.errors import BackendUnavailableError, InvalidPromptError, OutOfMemoryError
from SlicerNNInteractiveLib.automatic import BackendChoice, can_fall_back, fallen_back, resolve
from SlicerNNInteractiveLib.backends import BackendConfig

LOCAL = BackendConfig("local", device="auto", model="tiny")
SERVER = BackendConfig("official", "https://nninteractive.example:1527", "key")
CHOICE = BackendChoice("automatic", LOCAL, SERVER)


def installed(kind: str) -> list[str]:
    return []


def test_automatic_runs_locally_on_a_cuda_gpu():
    config, reason = resolve(CHOICE, "linux", lambda: ["cuda:0", "cuda:1"], installed)
    assert config == LOCAL and "cuda:0" in reason


def test_a_chosen_cuda_device_must_be_present():
    choice = replace(CHOICE, local=replace(LOCAL, device="cuda:1"))
    assert resolve(choice, "linux", lambda: ["cuda:0", "cuda:1"], installed)[0].device == "cuda:1"
    config, reason = resolve(choice, "linux", lambda: ["cuda:0"], installed)
    assert config == SERVER and "no usable CUDA GPU" in reason


@pytest.mark.parametrize(
    ("platform", "devices", "missing", "why"),
    [
        ("darwin", ["cuda:0"], [], "macOS"),
        ("linux", [], [], "no usable CUDA GPU"),
        ("win32", ["cuda:0"], ["torch"], "not installed"),
    ],
)
def test_automatic_uses_the_server_otherwise_and_says_why(platform, devices, missing, why):
    config, reason = resolve(CHOICE, platform, lambda: devices, lambda kind: missing)
    assert config == SERVER and why in reason


def test_automatic_without_a_server_address_says_what_to_do():
    with pytest.raises(BackendUnavailableError, match="no server address is set"):
        resolve(replace(CHOICE, server=replace(SERVER, url="")), "linux", lambda: [], installed)


def test_explicit_choices_are_taken_as_given():
    assert resolve(replace(CHOICE, kind="local"), "darwin", lambda: [], installed)[0] == LOCAL
    config, _reason = resolve(replace(CHOICE, kind="slicer_server"), "linux", lambda: ["cuda:0"], installed)
    assert config.kind == "slicer_server" and config.url == SERVER.url


def test_only_failures_a_server_would_not_have_offer_it():
    assert can_fall_back(CHOICE, LOCAL, OutOfMemoryError("CUDA out of memory"))
    assert can_fall_back(CHOICE, LOCAL, BackendUnavailableError("no CUDA GPU"))
    assert not can_fall_back(CHOICE, LOCAL, InvalidPromptError("outside the image"))
    assert not can_fall_back(CHOICE, SERVER, BackendUnavailableError("server unreachable"))
    assert not can_fall_back(replace(CHOICE, server=replace(SERVER, url="")), LOCAL, OutOfMemoryError("oom"))
    assert fallen_back(CHOICE).kind == "official"


def test_a_choice_is_checked():
    with pytest.raises(ValueError, match="Unknown backend choice"):
        BackendChoice("gpu-cluster")
    with pytest.raises(ValueError, match="server must be one of"):
        BackendChoice("automatic", LOCAL, BackendConfig("local"))
