"""A full replica is not a full deployment: the client tries other affinity keys before it reports busy.

One server with the replica header stands in for a deployment whose every replica is full (the tests on
a real two-replica deployment are in test_cluster.py); a plain server is asked once.
"""

from __future__ import annotations

import pytest
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config

from nninteractive_slicer.backends.slicer_server import PLACEMENT_TRIES, SlicerServerBackend
from nninteractive_slicer.errors import ServerBusyError
from nninteractive_slicer.server.cluster import ReplicaHeader


@pytest.mark.parametrize("replicated", [True, False], ids=["replica", "plain"])
def test_a_full_server_answers_busy_with_a_retry_hint(tiny_model_dir, image64, replicated):
    server = ThreadedServer(server_config(tiny_model_dir, max_sessions=1))
    if replicated:
        server.app.add_middleware(ReplicaHeader, replica="only")
    with server, SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as first:
        first.set_image(image64)
        second = SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S, affinity_key="fixed")
        second.check_connection()  # the server's limits, read once: not a session attempt
        before = second.stats.replicas["only"]
        with pytest.raises(ServerBusyError) as busy:
            second.set_image(image64)
        assert busy.value.retry_after >= 1
        assert second.stats.replicas["only"] - before == (PLACEMENT_TRIES if replicated else 0)  # sessions tried
        assert first.get_mask().shape == image64.shape  # the first session is untouched
        second.close()
