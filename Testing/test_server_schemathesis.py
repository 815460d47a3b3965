"""schemathesis fuzzes the server from its own OpenAPI document: no 5xx, no reply that breaks the schema."""

from __future__ import annotations

import subprocess
import sys

from fixtures_remote import ALICE_KEY, ThreadedServer, server_config


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tiny_model_dir, tmp_path):
    # Fuzzing claims many sessions and closes few: a dedicated server with room for them.
    config = server_config(tiny_model_dir, max_sessions=100_000, liveness_timeout_s=30.0)
    with ThreadedServer(config) as server:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
             "-H", f"Authorization: Bearer {ALICE_KEY}",
             # Every check but "schema-valid data is accepted": a schema cannot say that a point must lie
             # inside this session's image, nor what bytes make a valid frame; those get 4xx by design.
             "--checks", "all", "--exclude-checks", "positive_data_acceptance",
             "--max-examples", "40", "--workers", "1", "--no-color"],
            # It prints symbols: decode them whatever this host's locale, so a finding reads as one.
            capture_output=True, encoding="utf-8", errors="replace", timeout=240, cwd=tmp_path,  # its cache dir
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "passed" in run.stdout
        # It really reached the API, and left the server serving.
        assert server.core.metrics.requests.labels("POST", "/v1/sessions", "201")._value.get() > 0
