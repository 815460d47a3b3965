"""Real servers as subprocesses on 127.0.0.1, for tests and benchmarks: started, health-checked, stopped.

Both this project's ``nninteractive-slicer-server`` and the official ``nninteractive-server`` run here
the same way, on the CPU with a model folder, so tests and benchmarks compare like with like.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server command, restartable on the same port. ``start()`` waits for ``/healthz`` or fails with the log."""

    def __init__(self, command: list[str], port: int, api_key: str | None = None,
                 startup_timeout: float = 120.0, tls_cert: Path | None = None) -> None:
        self.command, self.port, self.api_key, self.startup_timeout = command, port, api_key, startup_timeout
        self.tls_cert = tls_cert  # the server speaks HTTPS with this (self-signed) certificate
        self._log = tempfile.TemporaryFile()
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + self.startup_timeout
        context = ssl.create_default_context(cafile=str(self.tls_cert)) if self.tls_cert else None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited with {self._process.returncode}:\n{self.log_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2, context=context) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not healthy after {self.startup_timeout} s:\n{self.log_text()[-4000:]}")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """End the process at once, as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=30)

    def log_text(self) -> str:
        """Everything the server printed, over all its starts."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def our_server(model_dir: Path, user: str, api_key: str, *extra: str, port: int | None = None,
               device: str = "cpu", threads: int = 2) -> ServerProcess:
    """``nninteractive-slicer-server`` with one user's key."""
    port = port or free_port()
    command = [sys.executable, "-m", "nninteractive_slicer.server.cli", "--model-dir", str(model_dir),
               "--device", device, "--torch-threads", str(threads), "--port", str(port),
               "--api-key", f"{user}:{api_key}", "--log-format", "text", *extra]
    return ServerProcess(command, port, api_key)


def official_server(model_dir: Path, api_key: str, *extra: str, port: int | None = None,
                    device: str = "cpu", threads: int = 2) -> ServerProcess:
    """The official ``nninteractive-server`` (facts: --fold is required, and --device cpu without a GPU)."""
    port = port or free_port()
    command = [str(BIN / "nninteractive-server"), "--model-dir", str(model_dir), "--fold", "0", "--device", device,
               "--no-torch-compile", "--torch-n-threads", str(threads), "--host", "127.0.0.1", "--port", str(port),
               "--api-key", api_key, *extra]
    return ServerProcess(command, port, api_key)
