"""The remote backend's factory, and the servers the remote and server tests run against.

``remote_backend_factory`` connects to a real server: uvicorn on 127.0.0.1 on a free port, serving the
tiny model on the CPU from a thread of the test process; it stops at the end of the test session.
:class:`ProcessServer` runs the CLI in a subprocess, for tests that kill and restart it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from nninteractive_slicer.remote import RemoteBackend
from nninteractive_slicer.server import ServerConfig, create_app

ALICE_KEY = "alice-key-0123456789"
BOB_KEY = "bob-key-0123456789ab"
API_KEYS = {ALICE_KEY: "alice", BOB_KEY: "bob"}
# Generous: prompts on two CPU cores wait behind other tests' work.
CLIENT_TIMEOUT_S = 120.0


def server_config(model_dir: Path, **overrides: Any) -> ServerConfig:
    """The tiny model on 2 CPU threads (as the local backend's fixture), two users."""
    settings: dict[str, Any] = {"model_dir": model_dir, "device": "cpu", "torch_threads": 2, "api_keys": API_KEYS,
                                "max_sessions": 16}
    return ServerConfig(**{**settings, **overrides})


class ThreadedServer:
    """uvicorn serving ``create_app(config)`` from a daemon thread, on a socket bound before it starts."""

    def __init__(self, config: ServerConfig, **uvicorn_options: Any) -> None:
        self.app = create_app(config)
        self.core = self.app.state.core
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        scheme = "https" if "ssl_certfile" in uvicorn_options else "http"
        self.url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, log_level="warning",
                                                    timeout_keep_alive=60, **uvicorn_options))
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ProcessServer:
    """``nninteractive-slicer-server`` in a subprocess that a test can kill and start again on the same port."""

    def __init__(self, model_dir: Path, log_path: Path, *extra_args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.args = [sys.executable, "-m", "nninteractive_slicer.server.cli", "--model-dir", str(model_dir),
                     "--device", "cpu", "--torch-threads", "2", "--port", str(self.port),
                     "--api-key", f"alice:{ALICE_KEY}", "--log-format", "text", *extra_args]
        self.proc: subprocess.Popen | None = None

    def start(self) -> ProcessServer:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not become healthy in 90 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def remote_server(tiny_model_dir: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(server_config(tiny_model_dir)) as server:
        yield server


@pytest.fixture(scope="session")
def remote_backend_factory(remote_server: ThreadedServer):
    return lambda: RemoteBackend(remote_server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S)
