"""Requests under attack, against the server as deployed (the CLI in its own process): bodies are refused
before they are read, with or without a key, and the server's memory stays flat."""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

import pytest
from fixtures_remote import ALICE_KEY
from server_processes import ServerProcess, our_server

BIG = 21 * 1024 * 1024  # a 21 MiB JSON body: parsed, about 500 MB of Python objects


def peak_rss_bytes(server: ServerProcess) -> int:
    for line in Path(f"/proc/{server._process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def read_status(sock: socket.socket) -> int:
    reply = b""
    while b"\r\n" not in reply:
        data = sock.recv(4096)
        if not data:
            raise AssertionError(f"connection closed without a status line: {reply!r}")
        reply += data
    return int(reply.split(b" ", 2)[1])


def send_big_body(url: str, headers: list[str], chunked: bool = False) -> tuple[int, bool]:
    """POST a 21 MiB JSON body to a prompt route; returns (status, whether it came before the body was sent)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=120)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}"
    head = "\r\n".join(["POST /v1/sessions/some-session/prompts HTTP/1.1", f"Host: {host}", *headers, framing])
    sock.sendall(head.encode() + b"\r\n\r\n")
    body = b"[" + b"1," * (BIG // 2 - 1) + b"1"
    first, rest = body[: 256 * 1024], body[256 * 1024 :]
    sock.sendall(f"{len(first):x}\r\n".encode() + first + b"\r\n" if chunked else first)
    early = bool(select.select([sock], [], [], 5.0)[0])  # an answer before the rest of the body is sent?
    if not early:
        try:
            sock.sendall(f"{len(rest):x}\r\n".encode() + rest + b"\r\n0\r\n\r\n" if chunked else rest)
        except OSError:
            pass
    try:
        return read_status(sock), early
    finally:
        sock.close()


KEY = f"Authorization: Bearer {ALICE_KEY}"
ATTACKS = {
    "no key, a vendor JSON type": (["Content-Type: application/vnd.x+json"], {401}),
    "no key, two content types": (["Content-Type: application/json", "Content-Type: application/octet-stream"],
                                  {400, 401}),
    "a key, a vendor JSON type": ([KEY, "Content-Type: application/vnd.x+json"], {413}),
    "a key, two content types": ([KEY, "Content-Type: application/json", "Content-Type: application/octet-stream"],
                                 {400, 413}),
}


def test_big_bodies_are_refused_before_they_are_read(tiny_model_dir):
    """Issue 13.2: a 21 MiB body on a JSON route passed the JSON limit and was parsed before authentication."""
    with our_server(tiny_model_dir, "alice", ALICE_KEY) as server:
        baseline = peak_rss_bytes(server)
        seen = {}
        for name, (headers, _) in ATTACKS.items():
            seen[name] = send_big_body(server.url, headers)
        seen["a key, chunked, a vendor JSON type"] = send_big_body(
            server.url, [KEY, "Content-Type: application/vnd.x+json"], chunked=True)
        growth = peak_rss_bytes(server) - baseline
        print(seen, f"peak RSS grew by {growth / 2**20:.0f} MiB")
        for name, (_, expected) in ATTACKS.items():
            assert seen[name][0] in expected and seen[name][1], (name, seen[name])
        assert seen["a key, chunked, a vendor JSON type"][0] == 413
        assert growth < 64 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MiB"
        started = time.perf_counter()
        assert send_health(server.url) == 200 and time.perf_counter() - started < 5


def send_health(url: str) -> int:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        return read_status(sock)


@pytest.mark.parametrize("declared", ["application/json", "application/octet-stream"])
def test_a_prompt_route_takes_small_json_whatever_the_type_says(remote_server, declared):
    """Issue 13.2: the body limit follows the route, not the Content-Type the client declares."""
    import requests

    reply = requests.post(f"{remote_server.url}/v1/sessions/s/prompts", data=b"[" + b"1," * 40_000 + b"1]",
                          headers={"Authorization": f"Bearer {ALICE_KEY}", "Content-Type": declared}, timeout=30)
    assert reply.status_code == 413 and reply.json()["error"] == "too_large"


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection within ``seconds`` (what it sends before is ignored)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_request_heads_and_slow_sockets_are_bounded(tiny_model_dir):
    """Issue 13.8: a 64 MiB header without a key was buffered, 200,000 header lines accepted, and a socket that
    stopped sending was never closed."""
    with our_server(tiny_model_dir, "alice", ALICE_KEY, "--request-timeout", "2") as server:
        baseline = peak_rss_bytes(server)
        with connect(server.url) as sock:  # one huge header, no key
            sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                for _ in range(64):
                    sock.sendall(b"a" * 2**20)
            except OSError:
                pass  # the server refused it and closed the connection
            assert read_status(sock) == 431
        with connect(server.url) as sock:  # many header lines
            try:
                sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n" + b"A: b\r\n" * 200_000 + b"\r\n")
            except OSError:
                pass
            assert read_status(sock) == 431
        assert peak_rss_bytes(server) - baseline < 32 * 2**20
        with connect(server.url) as sock:  # a head that never ends
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert closed_within(sock, 20)
        with connect(server.url) as sock:  # a connection that never sends anything
            assert closed_within(sock, 20)
        with connect(server.url) as sock:  # a body that stops half-way
            sock.sendall(f"PUT /v1/images/{'a' * 64}/chunks/0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                         f"{ALICE_KEY}\r\nContent-Length: 1000\r\n\r\n".encode() + b"x" * 100)
            assert closed_within(sock, 20)
