"""The plain server's connection limits on Ray Serve's proxy, which takes the connections in Ray mode.

Serve's proxy is uvicorn with its defaults: it buffers a request head of any size (64 MiB cost it
190 MB) and waits forever for one that never ends, before any replica (where the key is checked) sees
it. Ray calls the function named in ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` in every proxy
process before the proxy starts serving; :func:`install_limits` then makes uvicorn's ``auto`` HTTP
protocol (the one the proxy uses) the plain server's bounded protocol (:mod:`.serving`): the same head
limit (431), request timeout and connection cap. Bodies are bounded in the replica, which reads them
from the proxy as it goes (the proxy holds no whole body).

The variables are read in Ray's own processes, so, like the router's header name, they must be set on
every node before Ray starts; a replica refuses to start without them (see docs/deployment.md).
"""

from __future__ import annotations

import os
from typing import Any

from .serving import MAX_CONNECTIONS, REQUEST_TIMEOUT_S, uvicorn_options

CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = f"{__name__}:install_limits"
TIMEOUT_ENV = "NNINTERACTIVE_SLICER_REQUEST_TIMEOUT"  # seconds, as --request-timeout
CONNECTIONS_ENV = "NNINTERACTIVE_SLICER_MAX_CONNECTIONS"  # as --max-connections, per proxy


def environment(request_timeout_s: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS
                ) -> dict[str, str]:
    """The variables that put these limits on every proxy that Ray starts with them."""
    return {CALLBACK_ENV: CALLBACK, TIMEOUT_ENV: str(request_timeout_s), CONNECTIONS_ENV: str(max_connections)}


def install_limits() -> list[Any]:
    """Ray's proxy callback: bound every connection the proxy accepts from now on; adds no ASGI middleware."""
    import uvicorn.protocols.http.auto as auto

    options = uvicorn_options(float(os.environ.get(TIMEOUT_ENV, REQUEST_TIMEOUT_S)),
                              int(os.environ.get(CONNECTIONS_ENV, MAX_CONNECTIONS)))
    bounded, cap = options["http"], options["limit_concurrency"]

    class ProxyProtocol(bounded):  # type: ignore[misc, valid-type]
        """The bounded protocol with the connection cap, which Serve's uvicorn config does not carry."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.limit_concurrency = cap

    auto.AutoHTTPProtocol = ProxyProtocol
    return []


def configured() -> bool:
    """Whether the proxies of this node get the limits (the variable is read from the node's environment)."""
    return os.environ.get(CALLBACK_ENV) == CALLBACK
