"""How uvicorn serves the app: bounds on a request's head, on sockets that stop sending, on connections.

uvicorn (with httptools) buffers a request head of any size and any number of header lines, waits
forever for a request that is never finished (or never started), leaves a TLS handshake 60 s, and counts
a connection against its limit whether or not it ever shows a key: a client without a key could hold its
memory, its sockets and every slot. Here:

- a head is at most :data:`MAX_HEAD_BYTES` and :data:`MAX_HEADERS` lines and must arrive within the
  request timeout, and so must the TLS handshake before it;
- a body must bring :data:`MIN_BODY_BYTES` (or its end) within every request timeout: a pause or a
  trickle (1 byte/s) ends there;
- the process holds at most ``max_connections`` connections, counted from the moment they are accepted
  (handshakes included), and one client address at most ``max_per_address`` of them;
- connections that have not shown a valid key are the first to go: once fewer than ``reserve`` slots
  are free, a new connection closes the oldest of them that is idle (in its handshake, sending its
  head, or kept alive after a 401 or a health check). So a crowd of silent or keyless sockets never
  keeps out ``/healthz`` or a user with a key.

TLS is done here (``loop.start_tls``) rather than by the event loop's server, so that a connection is
counted before its handshake and the handshake has a deadline. It runs on asyncio's own loop: uvloop
starts reading a socket right after ``connection_made`` whatever the protocol asked, so the client's
hello could reach this protocol instead of the TLS layer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .auth import AUTHENTICATED

MAX_HEAD_BYTES = 32 * 1024  # request line and headers: an API key and a few headers need far less
MAX_HEADERS = 64
REQUEST_TIMEOUT_S = 30.0  # to finish the TLS handshake, to send a request head, and per MIN_BODY_BYTES of a body
MIN_BODY_BYTES = 64 * 1024  # 2 KiB/s at the default timeout: any real network sends a body faster
MAX_CONNECTIONS = 256
KEEP_ALIVE_S = 65.0  # longer than the usual proxy's 60 s, so the proxy closes first


def default_per_address(max_connections: int) -> int:
    """Half the connections: two addresses (or one reverse proxy, see docs/deployment.md) can use them all."""
    return max(1, max_connections // 2)


def default_reserve(max_connections: int) -> int:
    """Slots kept free of keyless connections: room for a few clients' connection pools at once."""
    return max(2, max_connections // 16)


class ConnectionGate:
    """Which connections the server holds, and which one makes room (see the module's docstring).

    Used from the event loop's thread only. Connections are kept in the order they came: the oldest first.
    """

    def __init__(self, max_connections: int, max_per_address: int, reserve: int) -> None:
        self.max_connections, self.max_per_address = max_connections, max_per_address
        self.reserve = min(reserve, max_connections - 1)
        self.held: dict[LimitedHttpProtocol, str] = {}
        self.per_address: Counter[str] = Counter()

    def admit(self, connection: LimitedHttpProtocol, address: str) -> bool:
        if self.per_address[address] >= self.max_per_address:
            return False
        if len(self.held) >= self.max_connections - self.reserve:
            victim = next((c for c in self.held if c.evictable()), None)
            if victim is not None:
                victim.evict()
        if len(self.held) >= self.max_connections:
            return False
        self.held[connection] = address
        self.per_address[address] += 1
        return True

    def release(self, connection: LimitedHttpProtocol) -> None:
        address = self.held.pop(connection, None)
        if address is not None:
            self.per_address[address] -= 1
            if not self.per_address[address]:
                del self.per_address[address]


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded heads, bodies, handshakes and connections (see the module)."""

    request_timeout_s = REQUEST_TIMEOUT_S
    gate: ConnectionGate
    tls: ssl.SSLContext | None = None
    _too_big: bool
    _head_done: bool
    _receiving: bool
    _head_bytes: int
    _head_size: int
    _header_lines: int
    _body_bytes: int
    _timer: asyncio.TimerHandle | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer = None
        self._served = self._released = self._authenticated = False
        self._raw: asyncio.Transport | None = None
        self._handshaking: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference
        self._early: list[bytes] = []  # what TLS decrypted before the handshake's task handed over

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._raw = transport
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple | list) and peer else "?"
        if not self.gate.admit(self, address):
            self._released = True
            self._refuse(transport)
            return
        if self.tls is None:
            self._serve(transport)
            return
        transport.pause_reading()  # nothing reaches the parser before the handshake
        self._handshaking = self.loop.create_task(self._handshake(transport, self.tls))

    async def _handshake(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        try:
            secure = await self.loop.start_tls(transport, self, context, server_side=True,
                                               ssl_handshake_timeout=self.request_timeout_s)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, RuntimeError):  # a timeout is a ConnectionAbortedError
            transport.abort()
            self._release()
            return
        finally:
            self._handshaking = None
        if self._released or secure is None or secure.is_closing():
            return
        self._serve(secure)

    def _serve(self, transport: asyncio.Transport) -> None:
        self._disarm()
        super().connection_made(transport)
        self._served = True
        self._start_head()  # a connection that never sends a request is closed too
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def _refuse(self, transport: asyncio.Transport) -> None:
        if self.tls is None:
            message = b"The server is at its connection limit; try again."
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\n"
                            b"content-length: %d\r\nretry-after: 1\r\n\r\n%s" % (len(message), message))
            transport.close()
        else:
            transport.abort()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self.gate.release(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._release()
        if self._served:
            super().connection_lost(exc)

    def evictable(self) -> bool:
        """Whether this connection may make room: no key shown, and no request being answered."""
        return not self._authenticated and (self.cycle is None or self.cycle.response_complete)

    def evict(self) -> None:
        self._disarm()
        transport = self.transport if self._served else self._raw
        if transport is not None and not transport.is_closing():
            transport.abort()
        self._release()  # at once: the slot is free before connection_lost arrives

    def authenticated(self) -> None:
        """Called by the auth middleware when a request on this connection showed a valid key."""
        self._authenticated = True

    def data_received(self, data: bytes) -> None:
        if not self._served:
            self._early.append(data)
            return
        if self._receiving and not self._head_done:
            self._head_bytes += len(data)  # what the parser holds while the head is incomplete
        elif self._receiving:
            self._body_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._too_big or (self._receiving and not self._head_done and self._head_bytes > MAX_HEAD_BYTES):
            self._refuse_head()
        elif self._receiving and self._head_done and self._body_bytes >= MIN_BODY_BYTES:
            self._body_bytes = 0
            self._arm()  # enough of the body came: a new period starts

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope.setdefault("extensions", {})[AUTHENTICATED] = self.authenticated
        if not self._receiving:  # the next request on a kept-alive connection: its head has its own deadline
            self._start_head()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), 1)
        if not self._too_big:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self._too_big:  # else refused in data_received, before the app sees it
            self._head_done = True
            self._body_bytes = 0
            self._arm()  # the body's first period
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._too_big:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._too_big:
            return
        super().on_message_complete()
        self._receiving = False
        self._disarm()  # the app is working on it: its time is not the client's

    def _start_head(self) -> None:
        self._head_bytes = self._head_size = self._header_lines = self._body_bytes = 0
        self._head_done, self._receiving, self._too_big = False, True, False
        self._arm()

    def _count(self, size: int, lines: int) -> None:
        self._head_size += size
        self._header_lines += lines
        self._too_big = self._too_big or self._head_size > MAX_HEAD_BYTES or self._header_lines > MAX_HEADERS

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(self.request_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        timer, self._timer = getattr(self, "_timer", None), None
        if timer is not None:
            timer.cancel()

    def _timed_out(self) -> None:
        self._timer = None
        if not self._receiving or self.transport.is_closing():
            return
        if self.flow.read_paused:  # the app has not taken what came: the wait is the server's, not the client's
            self._arm()
            return
        self.logger.info("closing a connection that stopped sending its request (or sent it too slowly)")
        self.transport.close()

    def _refuse_head(self) -> None:
        self._disarm()
        message = b"Request header fields too large"
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(message), message))
        self.transport.close()


def tls_context(certfile: str | Path, keyfile: str | Path) -> ssl.SSLContext:
    """A server context with the defaults of Python's ``ssl`` module (as uvicorn's own, minus its options)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certfile), str(keyfile))
    return context


def uvicorn_options(request_timeout_s: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS,
                    max_per_address: int | None = None, reserve: int | None = None,
                    tls_cert: str | Path | None = None, tls_key: str | Path | None = None) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run``/``uvicorn.Config`` that apply these limits (and TLS, when given).

    Each call makes a protocol class with a gate of its own: one per server.
    """
    gate = ConnectionGate(max_connections, max_per_address or default_per_address(max_connections),
                          default_reserve(max_connections) if reserve is None else reserve)
    tls = tls_context(tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    protocol = type("LimitedHttpProtocol", (LimitedHttpProtocol,),
                    {"request_timeout_s": request_timeout_s, "gate": gate, "tls": tls})
    # The gate counts connections; uvicorn's own limit would answer 503 to every request once it is reached.
    return {"http": protocol, "limit_concurrency": None, "timeout_keep_alive": KEEP_ALIVE_S,
            "h11_max_incomplete_event_size": MAX_HEAD_BYTES, "server_header": False,
            **({"loop": "asyncio"} if tls is not None else {})}
