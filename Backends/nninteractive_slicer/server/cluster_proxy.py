"""The plain server's connection limits on Ray Serve's proxy, which takes the connections in Ray mode.

Serve's proxy is uvicorn with its defaults: it buffers a request head of any size (64 MiB cost it
190 MB) and waits forever for one that never ends, before any replica (where the key is checked) sees
it. Ray calls the function named in ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` in every proxy
process before the proxy starts serving; :func:`install_limits` then makes uvicorn's ``auto`` HTTP
protocol (the one the proxy uses) the plain server's bounded protocol (:mod:`.serving`): the same head
limit (431), request timeout and connection cap. Bodies are bounded in the replica, which reads them
from the proxy as it goes (the proxy holds no whole body). The callback's middleware also turns the
proxy's bare 500 for a replica that died into the contract's answer (:class:`ReplicaLost`).

The variables are read in Ray's own processes, so, like the router's header name, they must be set on
every node before Ray starts; a replica refuses to start without them (see docs/deployment.md).
"""

from __future__ import annotations

import json
import logging
import os
import re

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..protocol.contract import REPLICA_HEADER, ErrorCode
from .auth import AUTHENTICATED
from .serving import MAX_CONNECTIONS, REQUEST_TIMEOUT_S, uvicorn_options

log = logging.getLogger("nninteractive_slicer.server")

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = f"{__name__}:install_limits"
TIMEOUT_ENV = "NNINTERACTIVE_SLICER_REQUEST_TIMEOUT"  # seconds, as --request-timeout
CONNECTIONS_ENV = "NNINTERACTIVE_SLICER_MAX_CONNECTIONS"  # as --max-connections, per proxy


def environment(request_timeout_s: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS
                ) -> dict[str, str]:
    """The variables that put these limits on every proxy that Ray starts with them."""
    return {CALLBACK_ENV: CALLBACK, TIMEOUT_ENV: str(request_timeout_s), CONNECTIONS_ENV: str(max_connections)}


def install_limits() -> list[Middleware]:
    """Ray's proxy callback: bound every connection the proxy accepts from now on, and answer for a replica
    that died with a request (:class:`ReplicaLost`)."""
    import uvicorn.protocols.http.auto as auto

    bounded = uvicorn_options(float(os.environ.get(TIMEOUT_ENV, REQUEST_TIMEOUT_S)),
                              int(os.environ.get(CONNECTIONS_ENV, MAX_CONNECTIONS)))["http"]

    class ProxyProtocol(bounded):  # type: ignore[misc, valid-type]
        """The bounded protocol, its connection cap included (Serve's uvicorn config carries no cap)."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            # The key is checked in the replica, another process: this connection's handle cannot travel there
            # (Serve pickles the scope), so through the proxy every connection counts as one without a key.
            self.scope.get("extensions", {}).pop(AUTHENTICATED, None)

    auto.AutoHTTPProtocol = ProxyProtocol
    return [Middleware(ReplicaLost)]


SESSION_PATH = re.compile(r"^/v1/sessions/[^/]+(/|$)")  # a call on one session (not the one that creates it)
_REPLICA = REPLICA_HEADER.lower().encode()


class ReplicaLost:
    """The contract's answer, instead of the proxy's bare 500, when the replica that took a request died.

    Every answer of a replica names it (:class:`~.cluster.ReplicaHeader`), so a 500 without that name is the
    proxy's own: the replica is gone (a node lost, a process killed) and so are the sessions it held. A call
    on a session gets ``session_unknown``, from which clients restore the session on the replica their key
    now reaches and run the call again; any other call gets ``busy`` with a short ``Retry-After``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = replaced = False
        on_session = SESSION_PATH.match(scope["path"]) is not None

        async def guard(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                if message["status"] == 500 and all(name.lower() != _REPLICA for name, _ in message.get("headers", [])):
                    replaced = True
                    for answer in _lost(on_session):
                        await send(answer)
                    return
            if not replaced:  # else the proxy's own body, already answered for
                await send(message)

        try:
            await self.app(scope, receive, guard)
        except Exception:
            if started:
                raise
            log.warning("the replica of %s %s failed or stopped; answered %s", scope.get("method"), scope["path"],
                        "session_unknown" if on_session else "busy", exc_info=True)
        else:
            if started:
                return
        for answer in _lost(on_session):  # the proxy gave up without an answer (uvicorn's would be a bare 500)
            await send(answer)


def _lost(on_session: bool) -> list[Message]:
    if on_session:
        status, code, headers = 404, ErrorCode.SESSION_UNKNOWN, []
        detail = "The replica that held this session stopped; restore the session and send the call again."
    else:
        status, code, headers = 503, ErrorCode.BUSY, [(b"retry-after", b"1")]
        detail = "The replica that took this call stopped; send it again."
    body = json.dumps({"error": code.value, "detail": detail}).encode()
    return [{"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         *headers]},
            {"type": "http.response.body", "body": body}]


def configured() -> bool:
    """Whether the proxies of this node get the limits (the variable is read from the node's environment)."""
    return os.environ.get(CALLBACK_ENV) == CALLBACK
