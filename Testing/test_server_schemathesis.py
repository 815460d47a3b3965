"""schemathesis fuzzes the server from its own OpenAPI document: no 5xx, no reply that breaks the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests
from fixtures_remote import ALICE_KEY, ThreadedServer, server_config
from prometheus_client.parser import text_string_to_metric_families

from nninteractive_slicer.protocol.contract import AFFINITY_HEADER


def fuzz(url: str, cwd: Path, *headers: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
         "-H", f"Authorization: Bearer {ALICE_KEY}", *(arg for header in headers for arg in ("-H", header)),
         # Every check but "schema-valid data is accepted": a schema cannot say that a point must lie
         # inside this session's image, nor what bytes make a valid frame; those get 4xx by design.
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--max-examples", "40", "--workers", "1", "--no-color"],
        # It prints symbols: decode them whatever this host's locale, so a finding reads as one.
        capture_output=True, encoding="utf-8", errors="replace", timeout=240, cwd=cwd,  # its cache dir
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "passed" in run.stdout


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tiny_model_dir, tmp_path):
    # Fuzzing claims many sessions and closes few: a dedicated server with room for them.
    config = server_config(tiny_model_dir, max_sessions=100_000, liveness_timeout_s=30.0)
    with ThreadedServer(config) as server:
        fuzz(server.url, tmp_path)
        # It really reached the API, and left the server serving.
        assert server.runtime.metrics.requests.labels("POST", "/v1/sessions", "201")._value.get() > 0


def test_schemathesis_finds_no_server_error_on_ray_serve(ray_cluster, tmp_path):
    """The same through Ray's proxy, on two replicas, with one affinity key as the remote client sends."""
    fuzz(ray_cluster.url, tmp_path, f"{AFFINITY_HEADER}: schemathesis")
    scrape = requests.get(f"{ray_cluster.url}/metrics", headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=60)
    created = [s.value for f in text_string_to_metric_families(scrape.text) if f.name == "nninteractive_requests"
               for s in f.samples if s.name.endswith("_total") and s.labels["route"] == "/v1/sessions"
               and s.labels["status"] == "201"]
    assert sum(created) > 0
