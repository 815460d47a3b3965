"""Serve's proxy, which takes the connections in Ray mode, has the plain server's limits (issue 24 §2): a
request head is bounded before any replica sees it, and a client that stops sending is let go.

Against the shared two-replica deployment of fixtures_cluster.py (request timeout PROXY_TIMEOUT_S).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

from fixtures_cluster import PROXY_TIMEOUT_S, descendants
from fixtures_remote import ALICE_KEY

from nninteractive_slicer.server.cluster_proxy import ReplicaLost

MIB = 2**20


def command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""  # it has just exited


def proxy_pid() -> int:
    (pid,) = [p for p in descendants(os.getpid()) if command(p).startswith(b"ray::ProxyActor")]
    return pid


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def status_of(sock: socket.socket) -> int | None:
    """The status of the reply, or None when the proxy closed without one."""
    reply = b""
    try:
        while b"\r\n" not in reply and (data := sock.recv(4096)):
            reply += data
    except ConnectionResetError:
        pass
    return int(reply.split(b" ", 2)[1]) if b"\r\n" in reply else None


def send(sock: socket.socket, *parts: bytes) -> None:
    try:
        for part in parts:
            sock.sendall(part)
    except OSError:
        pass  # refused and closed: the reply says why


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_an_oversized_head_without_a_key_costs_the_proxy_nothing(ray_cluster):
    """Before: the proxy buffered a 64 MiB header (+190 MB) and forwarded it; the plain server answers 431.
    A body is read by the replica as it goes, so one refused without a key never reaches the proxy's memory."""
    pid = proxy_pid()
    before = peak_rss(pid)
    with connect(ray_cluster.url) as sock:
        send(sock, b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Big: ", *[b"a" * MIB] * 64, b"\r\n\r\n")
        big = status_of(sock)
    after_head = peak_rss(pid) - before
    with connect(ray_cluster.url) as sock:  # many header lines
        send(sock, b"GET /v1/info HTTP/1.1\r\nHost: x\r\n" + b"A: b\r\n" * 200_000 + b"\r\n")
        many = status_of(sock)
    with connect(ray_cluster.url) as sock:  # a big body without a key: refused by the replica, held by nobody
        send(sock, f"PUT /v1/images/{'a' * 64}/chunks/0 HTTP/1.1\r\nHost: x\r\nContent-Length: {64 * MIB}\r\n"
                   "\r\n".encode(), *[b"a" * MIB] * 64)
        body = status_of(sock)
    growth = peak_rss(pid) - before
    print(f"\nproxy peak RSS {before / MIB:.0f} MiB: +{after_head / MIB:.1f} MiB after a 64 MiB head, "
          f"+{growth / MIB:.1f} MiB after 200,000 header lines and a 64 MiB body too")
    assert (big, many, body) == (431, 431, 401)
    assert growth < 32 * MIB, f"the proxy's peak RSS grew by {growth / MIB:.0f} MiB"
    with connect(ray_cluster.url) as sock:  # the proxy still serves
        send(sock, f"GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE_KEY}\r\n\r\n".encode())
        assert status_of(sock) == 200


def test_a_client_that_stops_sending_is_let_go(ray_cluster):
    """Before: a head trickled to the proxy stayed open after 40 s."""
    with connect(ray_cluster.url) as head, connect(ray_cluster.url) as silent, connect(ray_cluster.url) as body:
        send(head, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        send(body, f"PUT /v1/images/{'a' * 64}/chunks/0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE_KEY}"
                   "\r\nContent-Length: 1000\r\n\r\n".encode() + b"x" * 100)  # a body that stops half-way
        margin = PROXY_TIMEOUT_S + 15
        assert closed_within(head, margin) and closed_within(silent, margin) and closed_within(body, margin)



def answer_through_replica_lost(path: str, status: int, named: bool) -> tuple[int, dict]:
    """What a client gets through :class:`ReplicaLost` when the proxy behind it answers ``status``."""
    sent: list[dict] = []

    async def proxy(scope, receive, send):
        if status == 0:
            raise RuntimeError("the replica died")  # Serve's proxy leaves it to uvicorn: a bare 500
        headers = [(b"x-replica", b"r1")] if named else [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"Internal Server Error"})

    async def collect(message):
        sent.append(message)

    asyncio.run(ReplicaLost(proxy)({"type": "http", "path": path}, None, collect))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], json.loads(body) if start["status"] != status else {"body": body}


def test_a_replica_lost_with_a_request_is_answered_in_the_contract():
    """Before: the proxy's bare 500 reached the client as a server failure, so a node lost while a prompt ran
    failed that prompt instead of restoring the session elsewhere (test_cluster_nodes.py)."""
    status, body = answer_through_replica_lost("/v1/sessions/abc/prompts", 500, named=False)
    assert (status, body["error"]) == (404, "session_unknown")
    status, body = answer_through_replica_lost("/v1/images/abc/chunks/0", 500, named=False)
    assert (status, body["error"]) == (503, "busy")
    status, body = answer_through_replica_lost("/v1/sessions/abc/undo", 0, named=False)
    assert (status, body["error"]) == (404, "session_unknown")
    assert answer_through_replica_lost("/v1/sessions/abc", 500, named=True)[0] == 500  # our server's own 500
    assert answer_through_replica_lost("/v1/sessions/abc", 503, named=False)[0] == 503  # the proxy's busy


def test_the_proxy_callback_installs_the_plain_servers_protocol_with_the_connection_cap(monkeypatch):
    """What Ray's proxy runs at start (here in this process, and undone after)."""
    import uvicorn
    import uvicorn.protocols.http.auto as auto

    from nninteractive_slicer.server.cluster_proxy import CONNECTIONS_ENV, TIMEOUT_ENV, install_limits
    from nninteractive_slicer.server.serving import LimitedHttpProtocol

    monkeypatch.setattr(auto, "AutoHTTPProtocol", auto.AutoHTTPProtocol)
    monkeypatch.setenv(TIMEOUT_ENV, "7.5")
    monkeypatch.setenv(CONNECTIONS_ENV, "3")
    (middleware,) = install_limits()
    assert middleware.cls is ReplicaLost
    assert issubclass(auto.AutoHTTPProtocol, LimitedHttpProtocol)
    assert auto.AutoHTTPProtocol.request_timeout_s == 7.5
    config = uvicorn.Config(lambda: None, http="auto")  # as Serve's proxy configures uvicorn: no cap of its own
    config.load()
    assert config.http_protocol_class is auto.AutoHTTPProtocol and config.limit_concurrency is None
    assert auto.AutoHTTPProtocol.gate.max_connections == 3  # the cap is the protocol's own
