"""A Ray cluster of two nodes on this machine (``ray.cluster_utils.Cluster``) serving the tiny model over TLS,
one replica per node, both on one cache folder: the scenario of test_cluster_nodes.py, in its own process
(a process joins one Ray, and the test session's is the shared ``LocalCluster``).

``python cluster_nodes.py MODEL_DIR OUT_DIR`` writes ``OUT_DIR/report.json`` and each session's mask.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S, server_config  # noqa: E402
from server_processes import free_port  # noqa: E402
from synthetic import mr_like_image, prompt_script  # noqa: E402

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend  # noqa: E402
from nninteractive_slicer.protocol.contract import AFFINITY_HEADER, REPLICA_HEADER  # noqa: E402
from nninteractive_slicer.server import cluster, cluster_proxy  # noqa: E402

PROMPTS, LOST_AT = 10, 4  # the worker node is removed once each session has sent LOST_AT prompts
IMAGE_SEED = 40
PER_USER = 2  # --max-sessions-per-user, per replica


def self_signed(folder: Path) -> tuple[str, str]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(cert), str(key)


def stream(backend: SlicerServerBackend, image: np.ndarray, seed: int, sent: list[int], i: int) -> None:
    for n, prompt in enumerate(prompt_script(image.shape, seed=seed, count=PROMPTS)):
        backend.prompt(prompt)
        sent[i] = n + 1


def key_per_replica(url: str, cert: str) -> list[str]:
    """An affinity key for each replica, found by asking which replica random keys reach."""
    keys: dict[str, str] = {}
    for n in range(64):
        reply = requests.get(f"{url}/v1/info", headers={"Authorization": f"Bearer {ALICE_KEY}",
                                                        AFFINITY_HEADER: f"probe-{n}"}, verify=cert, timeout=60)
        keys.setdefault(reply.headers[REPLICA_HEADER], f"probe-{n}")
    assert len(keys) == 2, f"64 keys reached {sorted(keys)}"
    return list(keys.values())


def checks_through_the_proxy(url: str, cert: str) -> dict[str, object]:
    """Statuses of calls that the key and the per-user session cap must refuse, through the proxy."""
    pinned = {AFFINITY_HEADER: "quota-check"}  # one replica for every call below

    def call(method: str, path: str, key: str | None) -> requests.Response:
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.request(method, f"{url}{path}", headers={**pinned, **auth}, verify=cert, timeout=60)

    opened = [call("POST", "/v1/sessions", ALICE_KEY) for _ in range(PER_USER + 1)]
    ids = [r.json()["session_id"] for r in opened if r.status_code == 201]
    report = {"opened": [r.status_code for r in opened], "over_cap_detail": opened[-1].text[:300],
              "no_key": call("GET", "/v1/info", None).status_code,
              "wrong_key": call("GET", "/v1/info", "not-a-key-0123456789").status_code,
              "bob_reads_alice": call("GET", f"/v1/sessions/{ids[0]}", BOB_KEY).status_code,
              "bob_closes_alice": call("DELETE", f"/v1/sessions/{ids[0]}", BOB_KEY).status_code,
              "alice_reads_hers": call("GET", f"/v1/sessions/{ids[0]}", ALICE_KEY).status_code,
              "plain_http": _plain_http(url)}
    for session in ids:
        call("DELETE", f"/v1/sessions/{session}", ALICE_KEY)
    return report


def _plain_http(url: str) -> str:
    try:
        return str(requests.get(url.replace("https:", "http:") + "/healthz", timeout=10).status_code)
    except requests.RequestException as exc:
        return type(exc).__name__


def main(model_dir: Path, out: Path) -> None:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from ray.serve.config import HTTPOptions

    os.environ.update({cluster.ROUTER_ENV: AFFINITY_HEADER, **cluster_proxy.environment(request_timeout_s=10)})
    cert, key = self_signed(out)
    config = server_config(model_dir, torch_threads=1, max_sessions=8, max_sessions_per_user=PER_USER,
                           cache_dir=out / "shared-cache")
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = nodes.add_node(num_cpus=1)  # one replica of one CPU per node; the lost one has nowhere to go
    ray.init(address=nodes.address, logging_level=logging.WARNING)
    report: dict[str, object] = {}
    try:
        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options=HTTPOptions(host="127.0.0.1", port=port, ssl_certfile=cert,
                                                                        ssl_keyfile=key))
        serve.run(cluster.application(config, 2, 1.0, 0.0, "warning", "text"), name=cluster.APP_NAME,
                  route_prefix="/")
        url = f"https://127.0.0.1:{port}"
        report["through_proxy"] = checks_through_the_proxy(url, cert)

        # alice's session on one replica, bob's on the other, one image: after the loss the survivor holds the
        # image for its own user only, and the moved session must bind it without sending it
        image = mr_like_image((64, 64, 64), seed=IMAGE_SEED)
        backends = [SlicerServerBackend(url, user, timeout=CLIENT_TIMEOUT_S, verify=cert, affinity_key=affinity)
                    for user, affinity in zip((ALICE_KEY, BOB_KEY), key_per_replica(url, cert))]
        for backend in backends:  # one after the other: the owners record is written once per upload
            backend.set_image(image)
        sent = [0] * len(backends)
        errors: list[str] = []

        def run(i: int) -> None:
            try:
                stream(backends[i], image, 50 + i, sent, i)
            except Exception as exc:  # noqa: BLE001 - reported, the test asserts there is none
                errors.append(f"session {i}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(backends))]
        for thread in threads:
            thread.start()
        while min(sent) < LOST_AT and not errors and any(t.is_alive() for t in threads):
            time.sleep(0.05)
        uploads = [b.stats.upload_bytes for b in backends]
        report["sent_when_lost"] = list(sent)
        nodes.remove_node(worker)  # the node dies with its replica, while prompts are in flight
        for thread in threads:
            thread.join(timeout=900)
        report["errors"] = errors
        report["sessions"] = []
        for i, backend in enumerate(backends):
            np.save(out / f"mask{i}.npy", backend.get_mask())
            report["sessions"].append({"seed": 50 + i, "uploaded_after_loss": backend.stats.upload_bytes - uploads[i],
                                       "recoveries": backend.stats.recoveries,
                                       "replicas": sorted(backend.stats.replicas)})
            backend.close()
        report["alive_nodes"] = sum(1 for n in ray.nodes() if n["Alive"])
    finally:
        (out / "report.json").write_text(json.dumps(report, indent=1))
        serve.shutdown()
        ray.shutdown()
        nodes.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
