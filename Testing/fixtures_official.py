"""The official backend's factory: a real official ``nninteractive-server`` on 127.0.0.1, on the CPU,
serving the synthetic model, driven through nninteractive-client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import server_processes
from server_processes import ServerProcess

from nninteractive_slicer.backends.official import OfficialBackend

API_KEY = "test-key-official"
MAX_SESSIONS = 12  # the server's default of 3 is too few for a test run; backends are closed after each test


@pytest.fixture(scope="session")
def official_server(tiny_model_dir: Path) -> Iterator[ServerProcess]:
    with server_processes.official_server(tiny_model_dir, API_KEY, "--max-sessions", str(MAX_SESSIONS),
                                          "--log-level", "info") as server:
        yield server


@pytest.fixture(scope="session")
def official_backend_factory(official_server: ServerProcess):
    # The server does not report its device; it runs on the CPU here.
    return lambda: OfficialBackend(official_server.url, official_server.api_key, device="cpu")
