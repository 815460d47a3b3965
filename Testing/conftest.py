"""Shared fixtures: the synthetic model, images, and one factory per backend kind.

Every backend kind is a fixture ``<kind>_backend_factory`` returning a callable that makes a
fresh, connected backend. Contract tests are parametrised over ``BACKEND_KINDS``; a kind whose
factory fixture is not defined is reported as a failure, never skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import history_schema
import numpy as np
import pytest
from synthetic import mr_like_image

from nninteractive_slicer.core.synthetic_model import write_model
from nninteractive_slicer.interface import Backend

pytest_plugins = ["fixtures_local", "fixtures_remote", "fixtures_official", "fixtures_python312"]

BACKEND_KINDS = ["local", "remote", "official"]

history_schema.install()

BackendFactory = Callable[[], Backend]


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
