"""Ray beyond one node (issue 23 §6), on two nodes built on this machine (cluster_nodes.py, its own process):
losing a node while prompts stream costs a replay, never a wrong mask or an upload; the per-user key and
the per-user session cap hold through Serve's proxy; the proxy serves TLS with a self-signed certificate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cluster_nodes import IMAGE_SEED, LOST_AT, PER_USER, PROMPTS
from synthetic import mr_like_image, prompt_script

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def two_nodes(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("two-nodes")
    run = subprocess.run([sys.executable, str(HERE / "cluster_nodes.py"), str(tiny_model_dir), str(out)],
                         capture_output=True, text=True, timeout=1200, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    report = out / "report.json"
    assert report.is_file() and run.returncode == 0, f"{run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return json.loads(report.read_text()), out


def test_a_lost_node_costs_a_replay_never_a_mask_or_an_upload(two_nodes, local_backend_factory):
    report, out = two_nodes
    assert report["errors"] == [] and report["alive_nodes"] == 1
    assert all(sent >= LOST_AT for sent in report["sent_when_lost"])
    image = mr_like_image((64, 64, 64), seed=IMAGE_SEED)
    for i, session in enumerate(report["sessions"]):
        with local_backend_factory() as alone:
            alone.set_image(image)
            for prompt in prompt_script(image.shape, seed=session["seed"], count=PROMPTS):
                alone.prompt(prompt)
            np.testing.assert_array_equal(np.load(out / f"mask{i}.npy"), alone.get_mask(), err_msg=f"session {i}")
        assert session["uploaded_after_loss"] == 0, f"session {i} sent its image again: {session}"
    moved = [s for s in report["sessions"] if len(s["replicas"]) == 2]
    assert len(moved) == 1 and moved[0]["recoveries"] >= 1, report["sessions"]  # the lost node's session


def test_keys_and_the_per_user_cap_hold_through_the_proxy_over_tls(two_nodes):
    checks = two_nodes[0]["through_proxy"]
    assert checks["opened"] == [201] * PER_USER + [503], checks
    assert (checks["no_key"], checks["wrong_key"]) == (401, 401)
    assert checks["bob_reads_alice"] == 404 and checks["bob_closes_alice"] == 404, checks
    assert checks["alice_reads_hers"] == 200
    assert checks["plain_http"] != "200"  # the proxy speaks TLS only
