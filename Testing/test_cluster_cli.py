"""``nninteractive-slicer-server --replicas N`` starts its own Ray, serves, and stops every process it started."""

from __future__ import annotations

import requests
from fixtures_cluster import alive, descendants
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S
from server_processes import our_server
from synthetic import blob_centre

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.interface import Point
from nninteractive_slicer.protocol.contract import REPLICA_HEADER


def test_replicas_option_serves_on_ray_and_stops_it_on_sigterm(tiny_model_dir, image64):
    """Issue 24 §2: SIGTERM made the server abort (SIGABRT, a crash-style stack from Ray's signal handler), and
    two Ray agents outlived it by minutes."""
    server = our_server(tiny_model_dir, "alice", ALICE_KEY, "--replicas", "1", "--replica-cpus", "0.5", threads=1)
    server.startup_timeout = 300  # Ray, Serve, then the replica's model, on shared cores
    server.start()
    try:
        assert REPLICA_HEADER in requests.get(f"{server.url}/healthz", timeout=30).headers
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
            backend.set_image(image64)
            assert backend.prompt(Point(blob_centre(image64.shape))).changed
        started = descendants(server.pid)
        assert started, "the server started no Ray processes"
    finally:
        server.stop(timeout=120)  # SIGTERM: the server stops Serve and Ray before it exits
    log = server.log_text()
    assert server._process is not None and server._process.returncode == 0, log[-3000:]
    assert "SIGTERM received" not in log, log[-3000:]
    assert not (left := alive(started, wait_s=5)), f"{left}\n{log[-3000:]}"  # the server ended them before it exited
