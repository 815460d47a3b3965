"""How uvicorn serves the app: bounds on a request's head, on sockets that stop sending, on connections.

uvicorn (with httptools) buffers a request head of any size and any number of header lines, and waits
forever for a request that is never finished (or never started): a client without a key could hold its
memory and its sockets. Here a head is at most :data:`MAX_HEAD_BYTES` and :data:`MAX_HEADERS` lines and
must arrive within the request timeout, a body may pause no longer than that, and the process serves at
most ``max_connections`` connections at once (503 beyond).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 32 * 1024  # request line and headers: an API key and a few headers need far less
MAX_HEADERS = 64
REQUEST_TIMEOUT_S = 30.0  # to send a request head, and the longest pause within a body
MAX_CONNECTIONS = 256
KEEP_ALIVE_S = 65.0  # longer than the usual proxy's 60 s, so the proxy closes first


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded head and a request timeout (see the module's docstring)."""

    request_timeout_s = REQUEST_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._start_head()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._receiving and not self._head_done:
            self._head_bytes += len(data)  # what the parser holds while the head is incomplete
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._too_big or (self._receiving and not self._head_done and self._head_bytes > MAX_HEAD_BYTES):
            self._refuse_head()
        elif self._receiving and self._head_done:
            self._arm()  # the body is still coming: the pause starts again

    def on_message_begin(self) -> None:
        super().on_message_begin()
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
        self._head_bytes = self._head_size = self._header_lines = 0
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
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._receiving and not self.transport.is_closing():
            self.logger.info("closing a connection that stopped sending its request")
            self.transport.close()

    def _refuse_head(self) -> None:
        self._disarm()
        message = b"Request header fields too large"
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(message), message))
        self.transport.close()


def uvicorn_options(request_timeout_s: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS
                    ) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run``/``uvicorn.Config`` that apply these limits."""
    protocol = type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"request_timeout_s": request_timeout_s})
    return {"http": protocol, "limit_concurrency": max_connections, "timeout_keep_alive": KEEP_ALIVE_S,
            "h11_max_incomplete_event_size": MAX_HEAD_BYTES, "server_header": False}
