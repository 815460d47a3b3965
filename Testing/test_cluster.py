"""The server on Ray Serve with two replicas: sessions stay on one replica, results are those of a run alone,
and a killed replica costs a replay, never a result or an upload.

The backend contract runs against the same deployment (kind ``ray`` in test_backend_contract.py).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import ray
import requests
import yaml
from fixtures_cluster import RAY_REPLICAS
from fixtures_remote import ALICE_KEY
from prometheus_client.parser import text_string_to_metric_families
from ray import serve
from synthetic import mr_like_image, prompt_script

from nninteractive_slicer.backends import slicer_server
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.protocol.contract import AFFINITY_HEADER, REPLICA_HEADER
from nninteractive_slicer.server.cluster import DEPLOYMENT_NAME, build, replica_actor_name

DOCS = Path(__file__).resolve().parents[1] / "docs"
SESSIONS = 8
PROMPTS = 20
KILL_PROMPTS, KILLED_AT = 12, 6  # fewer in the kill test: its replacement replica loads a model meanwhile


def run_prompts(backend, image, seed: int, start: int = 0, stop: int = PROMPTS) -> None:
    """Prompts ``start..stop`` of a seeded mix of all four kinds, with an undo after the tenth."""
    if start == 0:
        backend.set_image(image)
    for i, prompt in enumerate(prompt_script(image.shape, seed=seed, count=PROMPTS)[start:stop], start):
        backend.prompt(prompt)
        if i == 9:
            backend.undo()


def alone(local_backend_factory, image, seed: int, stop: int = PROMPTS) -> np.ndarray:
    with local_backend_factory() as backend:
        run_prompts(backend, image, seed, stop=stop)
        return backend.get_mask()


def only_replica(backend: SlicerServerBackend) -> str:
    (replica,) = backend.stats.replicas
    return replica


def test_results_equal_the_local_backend_bit_for_bit(ray_backend_factory, local_backend_factory, image64):
    with ray_backend_factory() as backend:
        run_prompts(backend, image64, seed=5)
        np.testing.assert_array_equal(backend.get_mask(), alone(local_backend_factory, image64, 5))
        assert backend.get_mask().any()
        assert backend.stats.recoveries == 0
        only_replica(backend)


@pytest.mark.timeout(1800)  # 320 predictions on two shared cores: under 10 min even on a loaded machine
def test_eight_concurrent_sessions_each_stay_on_one_replica(ray_backend_factory, local_backend_factory):
    images = [mr_like_image((64, 64, 64), seed=60 + i % 2) for i in range(SESSIONS)]
    seeds = [70 + i for i in range(SESSIONS)]

    def user(i: int) -> tuple[np.ndarray, SlicerServerBackend]:
        with ray_backend_factory() as backend:
            run_prompts(backend, images[i], seeds[i])
            return backend.get_mask(), backend

    with ThreadPoolExecutor(SESSIONS) as pool:
        together = list(pool.map(user, range(SESSIONS)))  # raises on any error

    for i, (mask, backend) in enumerate(together):
        only_replica(backend)  # every answer of the session came from one replica
        assert backend.stats.recoveries == 0, f"session {i} was lost and rebuilt"
        np.testing.assert_array_equal(mask, alone(local_backend_factory, images[i], seeds[i]), err_msg=f"session {i}")


def test_a_killed_replica_costs_a_replay_never_a_result_or_an_upload(ray_backend_factory, local_backend_factory):
    """Kill the replica of the first session half-way; every next prompt succeeds, from the shared disk cache."""
    backends: list[SlicerServerBackend] = []
    images: list[np.ndarray] = []
    while len({only_replica(b) for b in backends}) < RAY_REPLICAS or len(backends) < 3:
        assert len(backends) < 16, "16 random affinity keys all landed on one replica"
        backend, image = ray_backend_factory(), mr_like_image((64, 64, 64), seed=80 + len(backends))
        run_prompts(backend, image, seed=90 + len(backends), stop=KILLED_AT)
        backends.append(backend)
        images.append(image)
    uploaded = [b.stats.upload_bytes for b in backends]
    victim = only_replica(backends[0])
    on_victim = [only_replica(b) == victim for b in backends]

    ray.kill(ray.get_actor(replica_actor_name(victim), namespace="serve"), no_restart=True)

    try:
        for i, backend in enumerate(backends):
            run_prompts(backend, images[i], seed=90 + i, start=KILLED_AT, stop=KILL_PROMPTS)
        for i, backend in enumerate(backends):
            np.testing.assert_array_equal(backend.get_mask(),
                                          alone(local_backend_factory, images[i], 90 + i, KILL_PROMPTS),
                                          err_msg=f"session {i}")
            assert backend.stats.upload_bytes == uploaded[i], f"session {i} uploaded its image again"
            if on_victim[i]:
                assert backend.stats.recoveries >= 1
                assert set(backend.stats.replicas) != {victim}
        # Not asserted: the replacement replica takes over part of every replica's keys (docs/deployment.md).
        print(f"\nrecoveries (on the killed replica): {[b.stats.recoveries for b, v in zip(backends, on_victim) if v]}"
              f", (elsewhere): {[b.stats.recoveries for b, v in zip(backends, on_victim) if not v]}")
    finally:
        for backend in backends:
            backend.close()


def test_a_scrape_of_any_replica_shows_every_replica(ray_cluster):
    """Scrapes answered by different replicas both carry the counters of all live replicas, labelled."""
    auth = {"Authorization": f"Bearer {ALICE_KEY}"}
    answered: dict[str, set[str]] = {}  # replica that answered -> replicas its latest scrape showed
    deadline = time.monotonic() + 120
    while len(answered) < RAY_REPLICAS or not all(set(answered) <= shown for shown in answered.values()):
        assert time.monotonic() < deadline, f"scrapes never showed all replicas: {answered}"
        reply = requests.get(f"{ray_cluster.url}/metrics", headers={**auth, AFFINITY_HEADER: os.urandom(6).hex()},
                             timeout=60)
        assert reply.status_code == 200
        requests_family = next(f for f in text_string_to_metric_families(reply.text)
                               if f.name == "nninteractive_requests")
        answered[reply.headers[REPLICA_HEADER]] = {s.labels["replica"] for s in requests_family.samples}
        time.sleep(0.2)


def test_the_serve_config_file_deploys_this_server(tmp_path):
    """docs/serve-config.yaml is a valid Serve config whose builder makes the application from its argv."""
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load((DOCS / "serve-config.yaml").read_text()))
    (app,) = config.applications
    module, name = app.import_path.split(":")
    assert (module, name) == ("nninteractive_slicer.server.cluster", "build")
    keys = tmp_path / "keys"
    keys.write_text(f"alice:{ALICE_KEY}\n")
    argv = [str(keys) if a == "/etc/nninteractive/keys" else a for a in app.args["argv"]]
    assert isinstance(build({"argv": argv}), serve.Application)
    assert [d.name for d in app.deployments] == [DEPLOYMENT_NAME]


def replica_loads(url: str) -> dict[str, int]:
    """Open sessions per replica, read through 32 random keys (all of two replicas but once in 2^31)."""
    loads = {}
    for _ in range(32):
        reply = requests.get(f"{url}/v1/info", headers={"Authorization": f"Bearer {ALICE_KEY}",
                                                        AFFINITY_HEADER: os.urandom(6).hex()}, timeout=60)
        loads[reply.headers[REPLICA_HEADER]] = reply.json()["sessions"]["open"]
    return loads


def test_a_new_session_starts_on_the_least_busy_replica(ray_cluster, ray_backend_factory, image64, monkeypatch):
    """Each new backend compares a few keys' replicas and takes the emptiest (by hash alone, a new session
    lands on the busier of two replicas half the time)."""
    monkeypatch.setattr(slicer_server, "PLACEMENT_PROBES", 32)  # so the probes surely reach both replicas
    backends = []
    try:
        for _ in range(4):
            loads = replica_loads(ray_cluster.url)
            assert len(loads) == RAY_REPLICAS
            backend = ray_backend_factory()
            backend.set_image(image64)
            backends.append(backend)
            assert loads[only_replica(backend)] == min(loads.values()), loads
    finally:
        for backend in backends:
            backend.close()
