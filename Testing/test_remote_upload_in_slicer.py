"""What Slicer gets for remote uploads: zstandard offered on demand, picked up without a restart, progress shown."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config
from slicer_scene import make_scene
from synthetic import mr_like_image

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.interface import PromptResult
from nninteractive_slicer.server.config import Limits
from SlicerNNInteractiveLib import backends as lib_backends
from SlicerNNInteractiveLib.pipeline import SYNC, PromptPipeline
from SlicerNNInteractiveLib.upload import upload_status


def test_zstandard_is_recommended_for_the_remote_backend_only_while_missing(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "zstandard" else real_find_spec(name, *a))
    assert lib_backends.recommended_requirements("slicer_server") == ["zstandard>=0.22"]
    assert lib_backends.recommended_requirements("official") == []
    assert lib_backends.recommended_requirements("local") == []
    assert lib_backends.missing_requirements("slicer_server") == []  # offered, never required
    monkeypatch.undo()
    assert lib_backends.recommended_requirements("slicer_server") == []  # installed in this environment


def test_zstandard_installed_after_start_is_used_by_the_next_remote_backend(remote_server):
    """As in Slicer: the wire format was loaded without zstandard, then the module installed it."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["zstandard"] = None  # not installed yet
        from nninteractive_slicer.protocol import wire
        assert "zstd" not in wire.AVAILABLE_CODECS, wire.AVAILABLE_CODECS
        del sys.modules["zstandard"]  # pip installed it
        from SlicerNNInteractiveLib.backends import BackendConfig, build_backend
        backend = build_backend(BackendConfig("slicer_server", {remote_server.url!r}, {ALICE_KEY!r}))
        print(backend._server._pool.headers["X-Accept-Codecs"])  # what every call of this backend offers
        backend.close()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env=_env_with_lib())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1].startswith("zstd,")


def test_upload_progress_is_shown_while_the_image_travels(tiny_model_dir):
    image = mr_like_image((40, 64, 64), seed=31)  # 655 kB in 64 kB chunks
    statuses: list[str] = []
    with ThreadedServer(server_config(tiny_model_dir, limits=Limits(chunk_bytes=64 * 1024))) as server:
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
            assert upload_status(backend) is None
            uploading = threading.Thread(target=backend.set_image, args=(image,))
            uploading.start()
            while uploading.is_alive():
                text = upload_status(backend)
                if text is not None:
                    statuses.append(text)
                time.sleep(0.0005)
            uploading.join()
            assert backend.stats.image_uploads == 1 and upload_status(backend) is None
    assert statuses, "no progress was shown during the upload"
    percents = [int(re.match(r"Uploading the image: (\d+)% of 1 MB \.\.\.", s).group(1)) for s in statuses]
    assert percents == sorted(percents) and percents[0] < 100
    assert len(set(percents)) > 1


def test_no_upload_no_status():
    assert upload_status(None) is None


def _env_with_lib() -> dict[str, str]:
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(repo / "Backends"), str(repo / "SlicerNNInteractive"),
                                         env.get("PYTHONPATH", "")])
    return env


def test_sync_ahead_of_the_first_prompt_says_the_image_is_ready():
    """The module queues a sync when the volume is chosen; its outcome is not 'the prompt changed nothing'."""
    world = make_scene()
    volume = world.volume(np.ones((4, 5, 6), np.int16), np.eye(4))
    editor = world.editor_node(volume, world.segmentation(volume))
    pipeline = PromptPipeline(world.scene, None, editor, world.app_logic)
    prepared = pipeline.prepare(SYNC)
    assert pipeline.apply(prepared, PromptResult()).message == "The image is ready for prompts."
