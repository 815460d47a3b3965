"""Log hygiene, on the server as deployed: a client cannot forge log lines, and nnInteractive's prints become
debug records instead of raw text in the log stream."""

from __future__ import annotations

import json

import requests
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S
from server_processes import our_server
from synthetic import blob_centre

from nninteractive_slicer.backends.remote import RemoteBackend
from nninteractive_slicer.interface import Point

AUTH = {"Authorization": f"Bearer {ALICE_KEY}"}


def test_text_logs_escape_what_clients_send(tiny_model_dir):
    """Issue 13.11: a session id with a newline forged a log line, and NUL bytes were written raw."""
    with our_server(tiny_model_dir, "alice", ALICE_KEY, "--log-format", "text") as server:
        for crafted in ("%0AFORGED", "%0D%0AFORGED", "x%00y"):
            reply = requests.post(f"{server.url}/v1/sessions/{crafted}/heartbeat", headers=AUTH, timeout=30)
            assert reply.status_code == 404
        requests.get(f"{server.url}/v1/info", headers=AUTH, timeout=30)  # the access log has written them by now
        log = server.log_text()
    assert "\x00" not in log
    assert not [line for line in log.splitlines() if line.startswith("FORGED")]
    assert "session=\\nFORGED" in log  # escaped, still readable


def test_nninteractive_prints_become_debug_records(tiny_model_dir, image64):
    """Issue 13.11: nnInteractive's own prints, prompt coordinates included, went into the JSON log as text."""
    for level, expect_prints in (("info", False), ("debug", True)):
        with our_server(tiny_model_dir, "alice", ALICE_KEY, "--log-format", "json", "--log-level", level) as server:
            with RemoteBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
                backend.set_image(image64)
                assert backend.prompt(Point(blob_centre(image64.shape))).changed
            server.stop()  # everything written
            records = [json.loads(line) for line in server.log_text().splitlines() if line.strip()]  # all JSON
        printed = [r for r in records if r.get("event") == "nninteractive_output"]
        assert bool(printed) == expect_prints, level
        if expect_prints:
            assert all(r["level"] == "debug" for r in printed)
            assert any("interaction" in r["message"] for r in printed)
