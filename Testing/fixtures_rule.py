"""Backends of every kind serving the ``rule`` synthetic model, whose answer to a prompt is known from the image.

One backend per kind of ``RULE_KINDS``: every kind but ``ray``, which serves the same server app as ``remote``
(a second Ray deployment for this model would double the time Ray takes in CI). The servers start on first
use and stop at the end of the test session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import server_processes
from fixtures_official import API_KEY as OFFICIAL_KEY
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config
from server_processes import ServerProcess

from nninteractive_slicer.backends.local import LocalBackend
from nninteractive_slicer.backends.official import OfficialBackend
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.devtools.synthetic_model import write_model
from nninteractive_slicer.interface import Backend


@pytest.fixture(scope="session")
def rule_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "rule", "tiny", variant="rule")


@pytest.fixture(scope="session")
def rule_remote_server(rule_model_dir: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(server_config(rule_model_dir)) as server:
        yield server


@pytest.fixture(scope="session")
def rule_official_server(rule_model_dir: Path) -> Iterator[ServerProcess]:
    with server_processes.official_server(rule_model_dir, OFFICIAL_KEY, "--max-sessions", "4") as server:
        yield server


RULE_KINDS = ["local", "remote", "official"]


@pytest.fixture(params=RULE_KINDS)
def rule_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def rule_backend(request: pytest.FixtureRequest, rule_kind: str, rule_model_dir: Path) -> Iterator[Backend]:
    """A fresh backend of the parametrised kind on the rule model, closed afterwards."""
    makers: dict[str, Callable[[], Backend]] = {
        "local": lambda: LocalBackend(model_dir=rule_model_dir, device="cpu", torch_threads=2),
        "remote": lambda: SlicerServerBackend(request.getfixturevalue("rule_remote_server").url, ALICE_KEY,
                                        timeout=CLIENT_TIMEOUT_S),
        "official": lambda: OfficialBackend(request.getfixturevalue("rule_official_server").url, OFFICIAL_KEY,
                                            device="cpu"),
    }
    with makers[rule_kind]() as backend:
        yield backend
