"""What every measurement drives: backends behind their servers and proxies, and a Slicer scene per image."""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cases
import numpy as np
from proxy import CountingProxy
from server_processes import ServerProcess, official_server, our_server
from slicer_scene import make_scene

from nninteractive_slicer.backends.local import LocalBackend
from nninteractive_slicer.backends.official import OfficialBackend
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.interface import Backend
from SlicerNNInteractiveLib.pipeline import PromptPipeline

HERE = Path(__file__).resolve().parent
API_KEY = "benchmark-key-0123456789"


def progress(message: str) -> None:
    """On stderr: stdout is silenced for the whole run, as nnInteractive prints on every prompt."""
    print(message, file=sys.stderr, flush=True)


class SegmentTarget:
    """A slicer-core scene with the benchmark image as a volume and a segmentation: where results land."""

    def __init__(self, size: str, image: np.ndarray, backend: Backend) -> None:
        self.world = make_scene()
        spacing = cases.SPACING[size]
        ijk_to_ras = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])  # LPS-like axes, anisotropic voxels
        volume = self.world.volume(image, ijk_to_ras)
        segmentation = self.world.segmentation(volume)
        editor = self.world.editor_node(volume, segmentation)
        self.pipeline = PromptPipeline(self.world.scene, backend, editor, self.world.app_logic)

    def prompt(self, prompt: Any) -> Any:
        """Voxel prompt -> sync check -> backend -> result written into the segment. Returns the backend result."""
        prepared = self.pipeline.prepare(prompt)
        result = self.pipeline.run(prepared)
        self.pipeline.apply(prepared, result)
        return result

    def new_object(self) -> None:
        self.pipeline.reset_segment()


class Target:
    """One backend kind: how to make a connected backend, the proxy counting its bytes and the server process
    (both None in process)."""

    def __init__(self, kind: str, make: Callable[[], Backend], proxy: CountingProxy | None,
                 server: ServerProcess | None) -> None:
        self.kind, self.make, self.proxy, self.server = kind, make, proxy, server

    def bytes(self) -> tuple[int, int]:
        return self.proxy.snapshot() if self.proxy else (0, 0)

    def model_ms(self) -> list[float] | None:
        """The official server's model times since the last call (its launcher times them); None elsewhere."""
        if self.kind != "official" or self.server is None:
            return None
        with urllib.request.urlopen(f"{self.server.url}/bench/model-ms", timeout=30) as reply:
            return json.loads(reply.read())


def official_timed(model_dir: Path, *extra: str, device: str, threads: int) -> ServerProcess:
    """The official server through benchmarks/official_timed.py, which times nnInteractive's calls inside it."""
    server = official_server(model_dir, API_KEY, *extra, device=device, threads=threads)
    server.command = [sys.executable, str(HERE / "official_timed.py"), *server.command[1:]]
    return server


ONE_DEVICE_THREAD = "server, 1 device thread"


@contextlib.contextmanager
def targets(kinds: list[str], model_dir: Path, device: str, threads: int) -> Iterator[list[Target]]:
    with contextlib.ExitStack() as stack:
        out = []
        for kind in kinds:
            if kind == "local":
                out.append(Target(kind, lambda: LocalBackend(model_dir=model_dir, device=device, torch_threads=threads),
                                  None, None))
                continue
            extra = ("--max-sessions", "12", "--log-level", "warning")
            if kind == "official":
                server = official_timed(model_dir, *extra, device=device, threads=threads)
            else:  # ours, or ours with one device thread (ONE_DEVICE_THREAD: as before the CPU default of two)
                extra += ("--device-threads", "1") if kind == ONE_DEVICE_THREAD else ()
                server = our_server(model_dir, "bench", API_KEY, *extra, device=device, threads=threads)
            stack.enter_context(server)
            proxy = stack.enter_context(CountingProxy(server.port))
            backend_class = OfficialBackend if kind == "official" else SlicerServerBackend
            out.append(Target(kind, lambda url=proxy.url, cls=backend_class: cls(url, API_KEY, timeout=600), proxy,
                              server))
        yield out
