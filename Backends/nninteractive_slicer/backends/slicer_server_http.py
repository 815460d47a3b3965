"""HTTP to this project's server: one keep-alive connection pool, timeouts, typed errors, heartbeats.

The remote backend (:mod:`.slicer_server`) keeps the session logic and its recovery; this module knows only the
contract (:mod:`..protocol.contract`) and ``requests``. Every error reply becomes a typed error from its code;
two of them (``SessionUnknown``, ``ImageUnknown``) are repaired by the backend, never shown.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests

from ..errors import AuthenticationError, BackendError, BackendUnavailableError, ServerBusyError
from ..protocol import wire
from ..protocol.bodies import B, BodyError, Health, Info
from ..protocol.contract import (
    ACCEPT_CODECS_HEADER,
    AFFINITY_HEADER,
    PROTOCOL_VERSION,
    REPLICA_HEADER,
    SERVER_NAME,
    ErrorCode,
    Route,
    Routes,
    RouteUnknown,
    code_of_reply,
)
from .server_backend import CONNECT_TIMEOUT_S

log = logging.getLogger(__name__)


class Unreachable(BackendUnavailableError):
    """The request did not get an answer: refused, reset or dropped connection."""


class ReplicaFull(ServerBusyError):
    """One replica of a replicated server is full; the others may not be."""


class MalformedReply(BackendError):
    """A success reply that does not decode or does not fit the image: nothing of it is applied."""


class ServerConnection:
    """The HTTP connection pool to one server, with its key, TLS verification and timeouts.

    Keep-alive connections carry every call, with explicit connect and read timeouts (the read timeout
    also bounds each socket write). ``verify`` goes with each request: REQUESTS_CA_BUNDLE would override
    a pool's own setting.

    ``affinity_key`` goes with every call, heartbeats and closes included: on a server replicated on Ray
    Serve (:mod:`..server.cluster`), it keeps all calls of a session on one replica."""

    def __init__(self, url: str, api_key: str | None, timeout: float, verify: bool | str, affinity_key: str) -> None:
        self.url = url.rstrip("/")
        self.affinity_key = affinity_key
        self.replicas: Counter[str] = Counter()  # answers per replica that named itself
        self._api_key = api_key
        self._verify = verify
        self.timeout = (min(CONNECT_TIMEOUT_S, timeout), timeout)
        self._pool = self.new_pool()
        self._info: Info | None = None

    def new_pool(self) -> requests.Session:
        pool = requests.Session()
        pool.headers[ACCEPT_CODECS_HEADER] = ",".join(wire.AVAILABLE_CODECS)  # as installed now
        if self._api_key:
            pool.headers["Authorization"] = f"Bearer {self._api_key}"
        return pool

    def request(self, route: Route, *, data: bytes | None = None, json: Any = None,
                headers: dict[str, str] | None = None, query: dict[str, Any] | None = None,
                pool: requests.Session | None = None, **params: Any) -> requests.Response:
        """One call of the contract: ``route`` with its path parameters filled in from ``params``, on ``pool``
        (default: the keep-alive pool of every call)."""
        try:
            response = (pool or self._pool).request(route.method, self.url + route.url(**params), data=data,
                                                    json=json, headers={**self._affinity(), **(headers or {})},
                                                    params=query, timeout=self.timeout, verify=self._verify)
        except requests.exceptions.SSLError as exc:
            raise BackendUnavailableError(
                f"TLS with {self.url} failed ({_reason(exc)}). If the server uses a self-signed certificate, set "
                "'verify' to its certificate file; if it serves plain HTTP, use an http:// URL.") from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise Unreachable(f"Cannot reach the server at {self.url}: no answer within {self.timeout[0]} s. "
                              "Check the address, the port and any firewall or SSH tunnel.") from exc
        except requests.exceptions.Timeout as exc:
            raise BackendUnavailableError(
                f"The server at {self.url} did not answer within {self.timeout[1]} s (it may be busy with other "
                "users' prompts); try again or raise the timeout.") from exc
        except requests.exceptions.ConnectionError as exc:
            raise Unreachable(f"Cannot reach the server at {self.url} ({_reason(exc)}). Is it running? If you use "
                              "an SSH tunnel, is it open?") from exc
        except requests.RequestException as exc:
            raise BackendUnavailableError(f"Request to {self.url} failed: {exc}") from exc
        replica = response.headers.get(REPLICA_HEADER)
        if replica:
            self.replicas[replica] += 1
        if response.status_code >= 400:
            raise self.error(response)
        return response

    def check_server(self) -> None:
        """Raise a typed error unless an nnInteractive-Slicer server of our protocol version answers."""
        try:
            health = Health.read(read_json(self.request(Routes.HEALTH)))
        except (BodyError, MalformedReply):
            health = None
        if health is None or health.server != SERVER_NAME:
            raise BackendUnavailableError(f"{self.url} answers, but it is not an nnInteractive-Slicer server.")
        if health.protocol_version != PROTOCOL_VERSION:
            raise BackendUnavailableError(
                f"Version mismatch: the server at {self.url} (version {health.version}) speaks protocol "
                f"{health.protocol_version}, this client speaks {PROTOCOL_VERSION}. Update the older one."
            )
        self._info = None

    def info(self) -> Info:
        """The server's /v1/info (limits, codecs, timeouts), fetched once until :meth:`forget_info`."""
        if self._info is None:
            reply = read_json(self.request(Routes.INFO))
            version = reply.get("protocol_version") if isinstance(reply, dict) else None
            if type(version) is int and version != PROTOCOL_VERSION:  # before the fields: another version's
                raise BackendUnavailableError(
                    f"Version mismatch: the server at {self.url} speaks protocol {version}, this client speaks "
                    f"{PROTOCOL_VERSION}. Update the older one.")
            self._info = read_body(Info, reply, "/info")
        return self._info

    def forget_info(self) -> None:
        """A restarted server may have other limits: ask again on the next :meth:`info`."""
        self._info = None

    def release(self, session_id: str) -> None:
        """Close a session, best effort and quickly: the server reaps it anyway."""
        route = Routes.CLOSE_SESSION
        try:
            self._pool.request(route.method, self.url + route.url(session_id=session_id), timeout=(1.0, 2.0),
                               verify=self._verify, headers=self._affinity())
        except requests.RequestException as exc:
            log.debug("could not close session %s...: %s", session_id[:8], exc)

    def heartbeat(self, session_id: str, pool: requests.Session) -> None:
        """One heartbeat on ``pool`` (not ours: it must never wait behind a prompt); failures are only logged."""
        route = Routes.HEARTBEAT
        try:
            pool.request(route.method, self.url + route.url(session_id=session_id), timeout=self.timeout,
                         verify=self._verify, headers=self._affinity())
        except requests.RequestException as exc:
            log.debug("heartbeat failed: %s", exc)

    def close(self) -> None:
        self._pool.close()

    def place(self, probes: int) -> None:
        """Take the key, of ``probes`` random ones, whose replica holds the fewest sessions: hashing alone often
        puts two users on one replica while another idles. A plain server (no replica header) is asked once."""
        keys = [self.affinity_key] + [secrets.token_urlsafe(12) for _ in range(probes - 1)]
        loads: dict[str, tuple[int, str]] = {}  # replica -> (its open sessions, the first key that reached it)
        route = Routes.INFO
        for key in keys:
            try:
                reply = self._pool.request(route.method, self.url + route.path, timeout=self.timeout,
                                           verify=self._verify, headers={AFFINITY_HEADER: key})
                replica = reply.headers.get(REPLICA_HEADER)
                if replica is None or reply.status_code != 200:
                    return
                loads.setdefault(replica, (int(Info.read(reply.json()).sessions["open"] or 0), key))
            except (requests.RequestException, ValueError, KeyError):
                return  # placement is an optimisation; the call that follows reports what is wrong
        self.affinity_key = min(loads.values(), key=lambda load: load[0])[1]

    def _affinity(self) -> dict[str, str]:
        return {AFFINITY_HEADER: self.affinity_key}

    def error(self, response: requests.Response) -> Exception:
        """The typed error for an error reply: by its JSON ``error`` code, else (a proxy, not our server) its status."""
        try:
            body = response.json()
            code, detail = str(body["error"]), str(body["detail"])
        except (ValueError, KeyError, TypeError):
            code, detail = ErrorCode.HTTP_ERROR.value, (response.text[:200] or response.reason or "no detail")
        status = response.status_code
        error = code_of_reply(code, status).error
        if error is AuthenticationError:
            return AuthenticationError(f"The server at {self.url} refused the API key: {detail}")
        if error is ServerBusyError:
            try:
                retry = float(response.headers.get("Retry-After", 5))
            except ValueError:
                retry = 5.0
            busy = ReplicaFull if REPLICA_HEADER in response.headers else ServerBusyError
            return busy(detail, retry_after=retry)
        if error is RouteUnknown:
            return RouteUnknown(f"{self.url} has no {response.request.path_url}: is it an nnInteractive-Slicer "
                                "server?")
        if error is BackendError:
            return BackendError(f"The server failed on this request ({status}): {detail}")
        return error(detail)


class Heartbeat:
    """Keeps the current session alive while the user thinks: a daemon thread with its own connection pool."""

    def __init__(self, connection: ServerConnection, session_id: Callable[[], str | None]) -> None:
        self._connection = connection
        self._session_id = session_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval: float) -> None:
        """Beat every ``interval`` seconds from now on (once started, later calls change nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True,
                                            name="nninteractive-remote-heartbeat")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _beat(self, interval: float) -> None:
        pool = self._connection.new_pool()
        while not self._stop.wait(interval):
            session_id = self._session_id()
            if session_id is not None:
                self._connection.heartbeat(session_id, pool)
        pool.close()


def read_json(response: requests.Response) -> Any:
    """The JSON of a success reply; MalformedReply if it is not JSON."""
    try:
        return response.json()
    except ValueError as exc:
        raise MalformedReply(f"The server's reply to {response.request.path_url} is not JSON: {exc}") from exc


def read_body(body: type[B], data: Any, what: str) -> B:
    """``data`` as the body the contract says, or MalformedReply saying what does not fit."""
    try:
        return body.read(data)
    except BodyError as exc:
        raise MalformedReply(f"The server's reply to {what} is malformed: {exc}") from exc


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests error, which names the real problem."""
    for _ in range(8):
        inner = exc.__cause__ or getattr(exc, "reason", None) or (exc.args[0] if exc.args else None)
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return str(exc) or type(exc).__name__
