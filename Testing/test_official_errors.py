"""Every way the official server or its client can fail becomes one of our typed errors, with a message to act on."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import httpx
import pytest
from nnInteractive.inference.remote import ServerAtCapacityError, SessionExpiredError
from server_processes import free_port

from nninteractive_slicer.backends.official import OfficialBackend
from nninteractive_slicer.backends.official_errors import translate
from nninteractive_slicer.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    InvalidPromptError,
    ServerBusyError,
)

URL = "http://server:1527"


def status_error(code: int, body: dict | None = None, headers: dict | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", f"{URL}/add_point_interaction")
    response = httpx.Response(code, json=body or {"detail": "why"}, headers=headers, request=request)
    return httpx.HTTPStatusError(f"HTTP {code}", request=request, response=response)


@pytest.mark.parametrize(
    ("exc", "typed", "says"),
    [
        (ServerAtCapacityError("server is at capacity (3 sessions)"), ServerBusyError, "full .*retry later"),
        (SessionExpiredError("lease expired or unknown"), BackendUnavailableError, "dropped this session again"),
        (httpx.ConnectTimeout("slow"), BackendUnavailableError, "did not accept a connection"),
        (httpx.ReadTimeout("slow"), BackendUnavailableError, "did not answer within 30 s"),
        (httpx.WriteTimeout("slow"), BackendUnavailableError, "did not answer within 30 s"),
        (httpx.ConnectError("[Errno 111] Connection refused"), BackendUnavailableError, "Cannot reach"),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"), BackendUnavailableError, "TLS connection"),
        (httpx.RemoteProtocolError("peer closed"), BackendUnavailableError, "broke off"),
        (status_error(401, {"detail": "Invalid bearer token"}), AuthenticationError, "refused the API key"),
        (status_error(403), AuthenticationError, "refused the API key"),
        (status_error(400, {"detail": "point outside image"}), InvalidPromptError, "point outside image"),
        (status_error(413), InvalidPromptError, "rejected the request"),
        (status_error(422), InvalidPromptError, "rejected the request"),
        (status_error(404), BackendUnavailableError, "not an nnInteractive server"),
        (status_error(429, headers={"Retry-After": "7"}), ServerBusyError, "busy"),
        (status_error(500, {"detail": "boom"}), BackendError, "failed on this request .*rebuilt"),
        (status_error(502), BackendUnavailableError, "proxy"),
        (status_error(418), BackendError, "HTTP 418"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_client_exceptions_map_to_typed_errors(exc, typed, says):
    error = translate(exc, URL, 30.0)
    assert type(error) is typed
    assert URL in str(error)
    assert re.search(says, str(error)), str(error)


def test_retry_after_is_passed_on():
    assert translate(status_error(429, headers={"Retry-After": "7"}), URL, 30.0).retry_after == 7.0


def test_bugs_are_not_disguised():
    assert translate(KeyError("x"), URL, 30.0) is None


def test_check_connection_names_server_and_license(official_backend_factory, official_server):
    with official_backend_factory() as backend:
        line = backend.check_connection()
        assert line.startswith(f"official nnInteractive server 2.6.0 at {official_server.url}: model Apache-2.0")
        assert backend.capabilities().extra["url"] == official_server.url


def test_wrong_key_is_an_authentication_error(official_server):
    with pytest.raises(AuthenticationError, match="refused the API key"):
        OfficialBackend(official_server.url, "not-the-key").check_connection()


def test_unreachable_server_is_reported_at_once():
    with pytest.raises(BackendUnavailableError, match="Cannot reach"):
        OfficialBackend(f"http://127.0.0.1:{free_port()}", "k", timeout=5).check_connection()


def test_tls_to_a_plain_http_server_is_explained(official_server):
    with pytest.raises(BackendUnavailableError, match="TLS connection"):
        OfficialBackend(official_server.url.replace("http://", "https://"), official_server.api_key).check_connection()


def test_address_must_be_http():
    with pytest.raises(BackendUnavailableError, match="not a server address"):
        OfficialBackend("127.0.0.1:1527")


def test_module_imports_without_the_client_and_asks_to_install_it():
    """Slicer imports every backend at start-up; the client (and httpx) may be missing."""
    script = textwrap.dedent(
        """
        import sys
        for name in ("httpx", "blosc2", "nnInteractive", "nnInteractive.inference", "nnInteractive.inference.remote"):
            sys.modules[name] = None  # as if not installed
        from nninteractive_slicer.errors import BackendUnavailableError
        from nninteractive_slicer.backends.official import OfficialBackend
        try:
            OfficialBackend("http://127.0.0.1:1527")
        except BackendUnavailableError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install nninteractive-client" in done.stdout
