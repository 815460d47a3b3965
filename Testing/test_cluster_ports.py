"""A local Ray (``--replicas``) listens where it was asked to (issue 24 §2).

Before, Ray's GCS, raylet, object manager, workers, agents and metrics servers listened on all
interfaces although ``--host`` was 127.0.0.1. Now only the proxy listens on ``--host``, Ray's own ports
on loopback, except one gRPC port per Serve replica that Serve binds to all interfaces itself: that one
refuses every call without Ray's token. Read from the kernel's socket tables, for every process the test
session started (Ray's among them).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import grpc
from fixtures_cluster import descendants


def listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket of ``pids`` that listens."""
    owner: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
        except OSError:
            continue  # it has just exited
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in owner:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.append((owner[fields[9]], str(_address(address)), int(port, 16)))
    return found


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/tcp{,6}: 32-bit words in host (little-endian) order."""
    raw = b"".join(bytes.fromhex(hex_address[i:i + 8])[::-1] for i in range(0, len(hex_address), 8))
    address = ipaddress.ip_address(raw)
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


def refused_without_token(port: int) -> bool:
    """Whether a call to a Serve replica's gRPC port, without Ray's token, is refused as unauthenticated."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            channel.unary_unary("/ray.serve.ASGIService/HandleRequest")(b"", timeout=30)
        except grpc.RpcError as error:
            return error.code() == grpc.StatusCode.UNAUTHENTICATED
    return False


def test_every_ray_port_listens_on_loopback_or_takes_no_call_without_the_token(ray_cluster):
    sockets = listening(descendants(os.getpid()) | {os.getpid()})
    proxy_port = int(ray_cluster.url.rsplit(":", 1)[1])
    assert (proxy := [address for _, address, port in sockets if port == proxy_port]) == ["127.0.0.1"], proxy
    assert len(sockets) > 5, sockets  # GCS, raylet, workers, agents: Ray's processes were read
    exposed = [(pid, command(pid), address, port)
               for pid, address, port in sockets if not ipaddress.ip_address(address).is_loopback]
    # Serve binds each replica's own gRPC port to all interfaces (hard-coded in Ray Serve 2.60); nothing else may
    replicas = [port for _, name, _, port in exposed if name.startswith(b"ray::ServeReplica")]
    assert len(replicas) == len(exposed), f"listening beyond loopback: {exposed}"
    assert all(refused_without_token(port) for port in replicas)


def command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()[:80]
    except OSError:
        return b""
