"""A loopback TCP proxy that counts the bytes each way and can make the loopback behave like a lab network.

Shaping models one link per direction, shared by every connection through the proxy (a laptop's Wi-Fi is
one link, however many requests use it): a chunk waits for the link to be free, takes ``bytes * 8 /
bandwidth`` seconds on it, and arrives ``rtt / 2`` later. Reading and delivering run on separate threads,
so several chunks can be in flight, as on a real link. It is an ideal link: no loss, no TCP slow start,
applied alike to every backend.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class Profile:
    """A network between the Slicer computer and the server; None bandwidth: loopback, unshaped."""

    name: str
    bandwidth_bps: float | None = None
    rtt_s: float = 0.0


LOOPBACK = Profile("loopback")
PROFILES = {p.name: p for p in (LOOPBACK, Profile("1 Gbit/s, 1 ms RTT", 1e9, 0.001),
                                Profile("100 Mbit/s, 20 ms RTT", 100e6, 0.020))}


class _Link:
    """One direction of the shaped network: when each chunk put on it arrives at the far end."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._free_at = 0.0
        self._lock = threading.Lock()

    def arrival(self, size: int) -> float:
        now = time.perf_counter()
        if self.profile.bandwidth_bps is None:
            return now
        with self._lock:
            self._free_at = max(now, self._free_at) + size * 8 / self.profile.bandwidth_bps
            return self._free_at + self.profile.rtt_s / 2


class CountingProxy:
    """Forwards 127.0.0.1:<port> to ``target_port``, counts bytes up (client->server) and down, and shapes
    the traffic as ``profile`` says (which may be changed between measurements)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1", profile: Profile = LOOPBACK) -> None:
        self.target = (host, target_port)
        self.up = 0
        self.down = 0
        self._lock = threading.Lock()
        self.profile = profile
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.target[0]}:{self.port}"

    @property
    def profile(self) -> Profile:
        return self._links[0].profile

    @profile.setter
    def profile(self, profile: Profile) -> None:
        """Takes effect for every chunk read from now on, on open connections too."""
        self._links = (_Link(profile), _Link(profile))

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.up, self.down

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                chunks: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
                threading.Thread(target=self._read, args=(source, chunks, upstream), daemon=True).start()
                threading.Thread(target=self._deliver, args=(chunks, source, sink), daemon=True).start()

    def _read(self, source: socket.socket, chunks: queue.SimpleQueue, upstream: bool) -> None:
        try:
            while chunk := source.recv(1 << 16):
                with self._lock:
                    if upstream:
                        self.up += len(chunk)
                    else:
                        self.down += len(chunk)
                chunks.put((self._links[0 if upstream else 1].arrival(len(chunk)), chunk))
        except OSError:
            pass
        finally:
            chunks.put(None)

    @staticmethod
    def _deliver(chunks: queue.SimpleQueue, source: socket.socket, sink: socket.socket) -> None:
        try:
            while (item := chunks.get()) is not None:
                at, chunk = item
                if (wait := at - time.perf_counter()) > 0:
                    time.sleep(wait)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
