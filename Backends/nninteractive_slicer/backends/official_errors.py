"""How failures of the official nninteractive-server (through nninteractive-client) become our typed errors.

The client raises its own two exceptions for lease problems and lets httpx's exceptions through
for everything else. The backend shows ``str(error)`` to the user, so each message says what
happened at which server and what to do about it. ``SessionExpiredError`` is not translated
here: the backend rebuilds the session instead (see :mod:`.official`).

httpx and the client are imported inside the functions: this module is imported with the backend,
which must import without nninteractive-client installed.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    InvalidPromptError,
    ServerBusyError,
)

CLIENT_MISSING = (
    "The official-server backend needs the nninteractive-client package, which is not installed: "
    "install it with `pip install nninteractive-client` (or the extension's `official` extra) and restart."
)


@contextmanager
def server_errors(url: str, timeout: float) -> Iterator[None]:
    """Re-raise the client's and httpx's exceptions as typed errors; typed errors pass through unchanged."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        typed = translate(exc, url, timeout)
        if typed is None:
            raise
        raise typed from exc


def translate(exc: Exception, url: str, timeout: float) -> BackendError | None:
    """The typed error for one failure talking to the server at ``url``; None for errors that are bugs."""
    import httpx
    from nnInteractive.inference.remote import ServerAtCapacityError, SessionExpiredError

    if isinstance(exc, ServerAtCapacityError):
        return ServerBusyError(
            f"The nnInteractive server at {url} is full ({exc}): retry later, close Slicer sessions you no "
            "longer use, or ask its operator to raise --max-sessions."
        )
    if isinstance(exc, SessionExpiredError):
        return BackendUnavailableError(
            f"The nnInteractive server at {url} dropped this session again right after it was restored ({exc}): "
            "it may be restarting or running with very short timeouts; try again in a moment."
        )
    if isinstance(exc, httpx.HTTPStatusError):
        return _from_status(exc.response, url)
    if isinstance(exc, httpx.ConnectTimeout):
        return BackendUnavailableError(
            f"The nnInteractive server at {url} did not accept a connection in time: check the address, "
            "the port and any firewall or VPN between you and the server."
        )
    if isinstance(exc, httpx.TimeoutException):
        return BackendUnavailableError(
            f"The nnInteractive server at {url} did not answer within {timeout:g} s; nothing was changed. "
            "It may be busy with other users or slow on this image: try again, or raise the timeout."
        )
    if isinstance(exc, httpx.ConnectError):
        if _is_tls_failure(exc):
            return BackendUnavailableError(
                f"The TLS connection to {url} failed ({exc}). If the server uses a self-signed certificate, "
                "install it as trusted; if the server speaks plain HTTP, use an http:// address."
            )
        return BackendUnavailableError(
            f"Cannot reach the nnInteractive server at {url} ({exc}): is it running, and are the address and "
            "port right?"
        )
    if isinstance(exc, httpx.TransportError):
        return BackendUnavailableError(
            f"The connection to the nnInteractive server at {url} broke off ({type(exc).__name__}: {exc}); "
            "nothing was changed. Try again."
        )
    return None


def _from_status(response, url: str) -> BackendError:
    """The typed error for an HTTP error status, quoting the server's own explanation."""
    code = response.status_code
    detail = _detail(response)
    if code in (401, 403):
        return AuthenticationError(
            f"The nnInteractive server at {url} refused the API key ({detail}): enter the key its operator "
            "started it with (--api-key)."
        )
    if code in (400, 413, 422):
        return InvalidPromptError(f"The nnInteractive server at {url} rejected the request: {detail}.")
    if code in (404, 405):
        return BackendUnavailableError(
            f"{url} has no {response.request.url.path} endpoint: it is not an nnInteractive server, or an older "
            "version than 2.6; check the address or ask its operator to update."
        )
    if code == 429:
        retry_after = response.headers.get("Retry-After")
        return ServerBusyError(
            f"The nnInteractive server at {url} is busy ({detail}): retry later.",
            float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
    if code in (502, 503, 504):
        return BackendUnavailableError(
            f"A proxy in front of the nnInteractive server at {url} could not reach it (HTTP {code}): "
            "the server may be down or restarting; try again in a moment."
        )
    if code >= 500:
        return BackendError(
            f"The nnInteractive server at {url} failed on this request (HTTP {code}: {detail}); nothing was "
            "changed here. Its log says why (for example, out of GPU memory on a large image); "
            "the session is rebuilt on the next request."
        )
    return BackendError(f"The nnInteractive server at {url} answered HTTP {code}: {detail}.")


def _detail(response) -> str:
    """The server's ``detail`` field, or a short excerpt of the body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and detail:
        return detail
    return (response.text or response.reason_phrase or f"HTTP {response.status_code}")[:200]


def _is_tls_failure(exc: Exception) -> bool:
    """httpx wraps ssl errors in ConnectError; look down the cause chain and at the message."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc).upper()
    return "SSL" in text or "CERTIFICATE" in text or "TLS" in text


def client_version() -> str | None:
    """The installed nnInteractive client's version (nninteractive-client, or the full nnInteractive)."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("nninteractive-client", "nnInteractive"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return None


def version_mismatch(url: str, server: str | None, client: str | None) -> BackendUnavailableError | None:
    """The error to raise when the server's nnInteractive cannot serve this client (None when it can).

    The official client and server speak the protocol of their nnInteractive release: the major versions
    must agree, and the server must be at least as new as the client's minor release. Otherwise requests
    fail with bare HTTP errors (upstream users see 502s), so this is said up front, in words.
    """
    def major_minor(text: str | None) -> tuple[int, int] | None:
        parts = (text or "").split(".")
        return (int(parts[0]), int(parts[1])) if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit() else None

    theirs, ours = major_minor(server), major_minor(client)
    if theirs is None or ours is None or (theirs[0] == ours[0] and theirs[1] >= ours[1]):
        return None
    older = "the server" if theirs < ours else "this computer's nnInteractive client"
    how = ("ask its operator to update nnInteractive on it" if older == "the server"
           else "update the client (pip install -U nninteractive-client, or update the extension)")
    return BackendUnavailableError(
        f"Version mismatch: the nnInteractive server at {url} runs nnInteractive {server}, this computer's client is "
        f"{client}; they cannot work together. {older[0].upper()}{older[1:]} is older: {how}."
    )

