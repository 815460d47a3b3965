"""The official backend's factory: a real official ``nninteractive-server`` on 127.0.0.1, on the CPU,
serving the synthetic model, driven through nninteractive-client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nninteractive_slicer.official import OfficialBackend

API_KEY = "test-key-official"
MAX_SESSIONS = 12  # the server's default of 3 is too few for a test run; backends are closed after each test


@dataclass
class OfficialServer:
    url: str
    api_key: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_command() -> str:
    found = shutil.which("nninteractive-server", path=os.path.dirname(sys.executable))
    return found or "nninteractive-server"


def start_official_server(
    model_dir: Path, log: Path, *extra: str, max_sessions: int = MAX_SESSIONS
) -> tuple[subprocess.Popen, OfficialServer]:
    """Start ``nninteractive-server`` on a free loopback port and wait until /healthz answers."""
    port = free_port()
    command = [
        _server_command(),
        "--model-dir", str(model_dir), "--fold", "0",  # --fold is required with --model-dir
        "--device", "cpu", "--no-torch-compile", "--torch-n-threads", "2",
        "--host", "127.0.0.1", "--port", str(port), "--api-key", API_KEY,
        "--max-sessions", str(max_sessions), "--log-level", "info", *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = OfficialServer(f"http://127.0.0.1:{port}", API_KEY, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nninteractive-server exited with {process.returncode}:\n{server.log_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return process, server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_official_server(process)
    raise RuntimeError(f"nninteractive-server was not healthy after 90 s:\n{server.log_text()[-3000:]}")


def stop_official_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def official_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfficialServer]:
    log = tmp_path_factory.mktemp("official") / "server.log"
    process, server = start_official_server(tiny_model_dir, log)
    yield server
    stop_official_server(process)


@pytest.fixture(scope="session")
def official_backend_factory(official_server: OfficialServer):
    # The server does not report its device; it runs on the CPU here.
    return lambda: OfficialBackend(official_server.url, official_server.api_key, device="cpu")
