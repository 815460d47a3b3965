"""The server on Ray Serve: a local Ray with two replicas of the tiny model, started once and stopped after.

Both replicas share one ``--cache-dir``, as replicas on one node (or on a shared volume) would. They
reserve half a CPU each, so they fit the two cores of the test machines beside the test process.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S, server_config
from server_processes import free_port

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend

RAY_REPLICAS = 2
PROXY_TIMEOUT_S = 5.0  # the proxy's request timeout (--request-timeout): short, so tests of it are quick


def _processes() -> list[tuple[int, int, str]]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=True).stdout
    return [(int(pid), int(ppid), args) for pid, ppid, args in (line.split(None, 2) for line in out.splitlines())]


def descendants(pid: int) -> set[int]:
    """Processes started by ``pid`` and by them (Ray's daemons and workers, for a process that started Ray)."""
    children: dict[int, list[int]] = {}
    for child, parent, _ in _processes():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int], wait_s: float = 180.0) -> list[str]:
    """Command lines of those of ``pids`` still running after up to ``wait_s`` seconds: Ray's workers notice
    that Ray stopped on their own, which took over a minute on a loaded machine."""
    deadline = time.monotonic() + wait_s
    while True:
        running = [f"{pid} {args}" for pid, _, args in _processes() if pid in pids]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.5)


@pytest.fixture(scope="session")
def ray_cluster(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from nninteractive_slicer.server.cluster import LocalCluster

    # Room for the sessions schemathesis claims and never closes.
    config = server_config(tiny_model_dir, torch_threads=1, max_sessions=100_000,
                           cache_dir=tmp_path_factory.mktemp("shared-cache"))
    before = descendants(os.getpid())  # other servers of this test session, which outlive this fixture
    with LocalCluster(config, RAY_REPLICAS, port=free_port(), replica_cpus=0.5, request_timeout_s=PROXY_TIMEOUT_S,
                      log_level="warning", log_format="text") as cluster:
        ray_started = descendants(os.getpid()) - before
        yield cluster
    assert not (left := alive(ray_started)), f"Ray left processes behind: {left}"


@pytest.fixture(scope="session")
def ray_backend_factory(ray_cluster):
    return lambda: SlicerServerBackend(ray_cluster.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S)
