"""One scene per browser session: ``nninteractive-slicer web --sessions N`` starts one app process per visitor.

One trame-slicer process is one MRML scene (a second tab sees the first's), and trame-slicer's view factories
are process-wide, so each browser session gets its own ``nninteractive-slicer web`` process, on a port of its
own, with the same arguments: make those a thin client of this project's server (``--backend URL``) and one GPU
and one model serve every annotator, with the server's keys, quotas and privacy. A visit to the launcher's
address starts a process and redirects there; a process ends a minute after its last browser left.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Sequence

from aiohttp import web

from .keys import key_middleware

READY_S = 180.0  # a session's process: imports, views, the image read
IDLE_EXIT_S = 60


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


async def listening(host: str, port: int, process: asyncio.subprocess.Process, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline and process.returncode is None:
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_connection(host, port)
            writer.close()
            return True
        await asyncio.sleep(0.2)
    return False


class Launcher:
    """Starts ``nninteractive-slicer web CHILD_ARGS --port P`` per visit, at most ``max_sessions`` at a time."""

    def __init__(self, child_args: Sequence[str], host: str, max_sessions: int) -> None:
        self.child_args = list(child_args)
        self.host = host
        self.max_sessions = max_sessions
        self.sessions: list[asyncio.subprocess.Process] = []

    async def visit(self, request: web.Request) -> web.StreamResponse:
        self.sessions = [p for p in self.sessions if p.returncode is None]
        if len(self.sessions) >= self.max_sessions:
            return web.Response(status=503, text=f"All {self.max_sessions} sessions are in use; try again later.")
        port = free_port(self.host)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nninteractive_slicer.web.cli", *self.child_args, "--host", self.host,
            "--port", str(port), "--idle-exit", str(IDLE_EXIT_S))
        self.sessions.append(process)
        if not await listening(self.host, port, process, READY_S):
            process.terminate()
            return web.Response(status=503, text="The session could not be started; see the launcher's log.")
        key = request.query.get("key")
        raise web.HTTPFound(f"{request.scheme}://{request.url.host}:{port}/" + (f"?key={key}" if key else ""))

    async def close(self, _app: web.Application) -> None:
        for process in self.sessions:
            if process.returncode is None:
                process.terminate()
        await asyncio.gather(*(p.wait() for p in self.sessions))


def serve(child_args: Sequence[str], host: str, port: int, max_sessions: int, api_key: str) -> None:
    launcher = Launcher(child_args, host, max_sessions)
    app = web.Application(middlewares=[key_middleware(api_key)] if api_key else [])
    app.router.add_get("/", launcher.visit)
    app.on_cleanup.append(launcher.close)
    print(f"nnInteractive web sessions: http://{host}:{port}/ (one process per visit, at most {max_sessions})",
          flush=True)
    web.run_app(app, host=host, port=port, print=None)
