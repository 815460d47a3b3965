"""The processes a local Ray started, so that stopping it leaves none behind.

``ray.shutdown()`` stops Ray's daemons, but its agents (dashboard and runtime-env agents) notice only
later that their raylet is gone: on a loaded machine they lived on for minutes. The server records
Ray's processes among its descendants before it shuts Ray down and ends those that outlive it. A
process is known by its pid and start time, so a reused pid is never signalled.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path

Process = tuple[int, int]  # pid, start time (clock ticks after boot)
_RAY_SPEC = importlib.util.find_spec("ray")
assert _RAY_SPEC is not None and _RAY_SPEC.origin is not None, "Ray is installed (the cluster extra)"
# "site-packages/ray/": the folder Ray is installed in, whichever path (venv link or not) started the process
_RAY_PACKAGE = os.fsencode(Path(_RAY_SPEC.origin).parent.parent.name) + b"/ray/"


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # exited, waiting for its parent: nothing to end
        return None
    return int(fields[1]), int(fields[19])


def _is_ray(pid: int) -> bool:
    """Ray's workers name themselves ``ray::...``; its daemons and agents run from Ray's package."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return command.startswith(b"ray::") or _RAY_PACKAGE in command


def ray_descendants(pid: int | None = None) -> set[Process]:
    """Ray's processes among the descendants of ``pid`` (this process by default); none known without /proc."""
    pid = os.getpid() if pid is None else pid
    if not Path("/proc/self/stat").is_file():
        return set()
    children: dict[int, list[Process]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    found: set[Process] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child[0])
    return {p for p in found if _is_ray(p[0])}


def running(processes: set[Process]) -> set[Process]:
    return {p for p in processes if (stat := _stat(p[0])) is not None and stat[1] == p[1]}


def end(processes: set[Process], grace_s: float = 10.0) -> set[Process]:
    """Wait up to ``grace_s`` for ``processes`` to exit, then SIGTERM, then SIGKILL them; returns the ended."""
    ended: set[Process] = set()
    for sig, wait_s in ((None, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        left = running(processes)
        if sig is not None:
            for process in left:
                try:
                    os.kill(process[0], sig)
                    ended.add(process)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait_s
        while (left := running(processes)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not left:
            break
    return ended
