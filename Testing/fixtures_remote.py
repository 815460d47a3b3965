"""The remote backend's factory, and the servers the remote and server tests run against.

``remote_backend_factory`` connects to a real server: uvicorn on 127.0.0.1 on a free port, serving the
tiny model on the CPU from a thread of the test process; it stops at the end of the test session.
Tests that kill and restart a server run the CLI through :func:`server_processes.our_server`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.server import ServerConfig, create_app, serving

ALICE_KEY = "alice-key-0123456789"
BOB_KEY = "bob-key-0123456789ab"
API_KEYS = {ALICE_KEY: "alice", BOB_KEY: "bob"}
# Generous: prompts on two CPU cores wait behind other tests' work.
CLIENT_TIMEOUT_S = 120.0


def hold_device(server: ThreadedServer, release: threading.Event) -> int:
    """Keep every device thread busy (another user's long predictions) until ``release``; returns how many calls
    that queued, so that a test can count the device queue beyond them."""
    worker = server.runtime.worker
    for thread in range(worker.threads):
        worker.submit(release.wait, 60, lane=("another user", thread))
    return worker.threads


def server_config(model_dir: Path, **overrides: Any) -> ServerConfig:
    """The tiny model on 2 CPU threads (as the local backend's fixture), two users."""
    settings: dict[str, Any] = {"model_dir": model_dir, "device": "cpu", "torch_threads": 2, "api_keys": API_KEYS,
                                "max_sessions": 16}
    return ServerConfig(**{**settings, **overrides})


class ThreadedServer:
    """uvicorn serving ``create_app(config)`` from a daemon thread, on a socket bound before it starts."""

    def __init__(self, config: ServerConfig, **uvicorn_options: Any) -> None:
        self.app = create_app(config)
        self.runtime = self.app.state.runtime
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        scheme = "https" if "ssl_certfile" in uvicorn_options else "http"
        self.url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        options = {**serving.uvicorn_options(), "timeout_keep_alive": 60, **uvicorn_options}  # as the CLI runs it
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, log_level="warning", **options))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)


@pytest.fixture(scope="session")
def remote_server(tiny_model_dir: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(server_config(tiny_model_dir)) as server:
        yield server


@pytest.fixture(scope="session")
def remote_backend_factory(remote_server: ThreadedServer):
    return lambda: SlicerServerBackend(remote_server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S)
