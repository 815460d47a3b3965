"""Keys, loopback-only without a key, docs behind the same auth, TLS."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests
from fixtures_remote import ALICE_KEY, ThreadedServer, server_config

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.errors import BackendUnavailableError
from nninteractive_slicer.server.auth import ENV_VAR, load_keys
from nninteractive_slicer.server.options import build_parser, config_from_args


def test_docs_and_openapi_need_a_key_healthz_does_not(remote_server):
    url = remote_server.url
    assert requests.get(f"{url}/healthz", timeout=10).json()["status"] == "ok"
    for path in ("/docs", "/openapi.json", "/v1/info", "/metrics"):
        refused = requests.get(f"{url}{path}", timeout=10)
        assert refused.status_code == 401, path
        assert refused.json()["error"] == "unauthorized"
    # A browser gets a Basic challenge for the docs and may answer with the key as password.
    assert requests.get(f"{url}/docs", timeout=10).headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(f"{url}/docs", auth=("anyone", ALICE_KEY), timeout=10).status_code == 200
    spec = requests.get(f"{url}/openapi.json", headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=10).json()
    assert "/v1/sessions/{session_id}/prompts" in spec["paths"]
    assert "/openapi.json" not in spec["paths"]


def test_keys_come_from_options_environment_and_file(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# lab keys\ncarol:carol-key-0123456789\n\n")
    keys = load_keys(["alice:alice-key", "bare-key"], keys_file, {ENV_VAR: "bob:bob-key, dave:dave-key"})
    assert keys == {"alice-key": "alice", "bare-key": "default", "bob-key": "bob", "dave-key": "dave",
                    "carol-key-0123456789": "carol"}
    with pytest.raises(ValueError, match="twice"):
        load_keys(["a:same", "b:same"], environ={})


@pytest.mark.parametrize(("args", "allowed"), [
    ([], True),  # loopback, no key
    (["--host", "0.0.0.0"], False),  # anywhere, no key
    (["--host", "0.0.0.0", "--api-key", "lab:" + "k" * 20], True),
    (["--host", "0.0.0.0", "--allow-remote-without-key"], True),
    (["--host", "::1"], True),
    (["--tls-cert", "c.pem"], False),  # a certificate needs its key
])
def test_without_a_key_the_server_stays_on_loopback(args, allowed, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    parsed = build_parser().parse_args(args)
    if allowed:
        config = config_from_args(parsed)
        assert parsed.port == 1527 and config.max_sessions >= 1
    else:
        with pytest.raises(SystemExit, match="error"):
            config_from_args(parsed)


def test_a_server_without_keys_serves_loopback_clients(tiny_model_dir):
    with ThreadedServer(server_config(tiny_model_dir, api_keys={})) as server:
        assert "cpu" in SlicerServerBackend(server.url).check_connection()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_with_a_self_signed_certificate(tiny_model_dir, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    with ThreadedServer(server_config(tiny_model_dir), ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
        assert server.url.startswith("https://")
        assert "cpu" in SlicerServerBackend(server.url, ALICE_KEY, verify=str(cert)).check_connection()
        with pytest.raises(BackendUnavailableError, match="TLS.*verify"):
            SlicerServerBackend(server.url, ALICE_KEY).check_connection()  # not trusted by default
        with pytest.raises(BackendUnavailableError, match="Cannot reach|not an nnInteractive"):
            SlicerServerBackend(server.url.replace("https:", "http:"), ALICE_KEY, timeout=5).check_connection()
