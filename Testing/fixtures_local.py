"""The local backend's factory: nnInteractive in the test process, on the CPU, with the synthetic model."""

from __future__ import annotations

from pathlib import Path

import pytest

from nninteractive_slicer.backends.local import LocalBackend


@pytest.fixture(scope="session")
def local_backend_factory(tiny_model_dir: Path):
    return lambda: LocalBackend(model_dir=tiny_model_dir, device="cpu", torch_threads=2)
