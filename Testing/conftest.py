"""Shared fixtures: the synthetic model, images, and one factory per backend kind.

Every backend kind is a fixture ``<kind>_backend_factory`` returning a callable that makes a
fresh, connected backend. Contract tests are parametrised over ``BACKEND_KINDS``; a kind whose
factory fixture is not defined is reported as a failure, never skipped silently.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import history_schema
import numpy as np
import pytest
from synthetic import mr_like_image

from nninteractive_slicer.devtools.synthetic_model import write_model
from nninteractive_slicer.interface import Backend

pytest_plugins = ["fixtures_local", "fixtures_remote", "fixtures_official", "fixtures_python312", "fixtures_rule",
                  "fixtures_cluster"]

BACKEND_KINDS = ["local", "remote", "official", "ray"]  # ray: the server on Ray Serve, 2 replicas

history_schema.install()

BackendFactory = Callable[[], Backend]
# The browser tests need trame-slicer, which lives in its own venv (.venv-web): scripts/test.sh runs them there.
collect_ignore_glob = [] if importlib.util.find_spec("trame_slicer") else ["test_web_*.py"]
SKIPPED: list[str] = []  # node id and reason of every skipped test, for --no-skips


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--no-skips", action="store_true",
                     help="fail the run if any test was skipped: CI is meant to run every check (Python 3.12 too)")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        SKIPPED.append(f"{report.nodeid}: {report.longrepr[2] if isinstance(report.longrepr, tuple) else ''}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.getoption("--no-skips") and SKIPPED:
        lines = "\n  ".join(SKIPPED)
        print(f"\n\nFAILED: {len(SKIPPED)} check(s) meant to run were skipped:\n  {lines}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="session")
def image64() -> np.ndarray:
    return mr_like_image((64, 64, 64), seed=1)


@pytest.fixture(params=BACKEND_KINDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_backend(request: pytest.FixtureRequest, backend_kind: str) -> Iterator[BackendFactory]:
    """A factory for fresh backends of the parametrised kind; everything it made is closed afterwards."""
    factory: BackendFactory = request.getfixturevalue(f"{backend_kind}_backend_factory")
    made: list[Backend] = []

    def make() -> Backend:
        backend = factory()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
