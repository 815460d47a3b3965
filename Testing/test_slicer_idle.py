"""An idle Slicer keeps its server session and takes its undo snapshot (both server kinds, and local).

While Slicer idles, Qt holds the GIL and no other Python thread runs unless the module's timer lets it, so
heartbeats (this project's client and the official one) stop and the server reaps the session after its
liveness timeout; the next prompt then silently replays the whole object. With a backend open, the timer
ticks slowly and each tick lets other threads run. Servers here run with a short liveness timeout, and the
emulated Slicer (slicer_host) idles for 3-4 times that after a prompt; the server's log must show no session
reaped, and the session must still be the one the prompt made.
"""

from __future__ import annotations

import numpy as np
from server_processes import official_server, our_server
from slicer_host import SlicerHost, module_timer
from slicer_scene import make_scene
from synthetic import blob_centre, mr_like_image

from nninteractive_slicer.backends.local import LocalBackend
from nninteractive_slicer.backends.official import OfficialBackend
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from SlicerNNInteractiveLib import PromptPipeline, point_prompt
from SlicerNNInteractiveLib.logic import QueuedPrompt, SlicerNNInteractiveLogic

SHAPE = (48, 64, 64)
KEY = "idle-key-0123456789ab"


def prompt_then_idle(backend, idle_s: float, logic_class: type = SlicerNNInteractiveLogic
                     ) -> tuple[SlicerHost, SlicerNNInteractiveLogic]:
    """One prompt through the Logic under the emulated Slicer, then ``idle_s`` of an idle Slicer."""
    s = make_scene()
    volume = s.volume(mr_like_image(SHAPE, seed=1))
    pipeline = PromptPipeline(s.scene, backend, s.editor_node(volume, s.segmentation(volume)), s.app_logic)
    logic = logic_class(pipeline)
    logic.use_backend(backend)
    host = SlicerHost(qt_ms=10)
    events: list = []
    timer = module_timer(host, logic, events)
    finished: list[int] = []
    world = np.array(blob_centre(SHAPE)[::-1], dtype=float)
    logic.enqueue(QueuedPrompt(lambda g: point_prompt(world, g, True), lambda: finished.append(1)))
    timer.start(10)
    host.run(until=lambda: bool(finished), timeout_s=300)
    assert not [e for e in events if "not changed" in e.text], events
    host.idle(idle_s)
    return host, logic


def test_our_server_keeps_the_session_through_an_idle_of_three_liveness_timeouts(tiny_model_dir):
    liveness = 3.0
    with our_server(tiny_model_dir, "alice", KEY, "--liveness-timeout", str(liveness)) as server:
        backend = SlicerServerBackend(server.url, KEY, timeout=120)
        try:
            prompt_then_idle(backend, 3 * liveness)
            log = server.log_text()
            assert "session created" in log, log[-3000:]
            assert "session closed" not in log, log[-3000:]
        finally:
            backend.close()


def test_the_official_server_keeps_the_session_through_an_idle_of_four_liveness_timeouts(tiny_model_dir):
    # The official server sweeps every 15 s; 4 liveness timeouts of 5 s cover one sweep after the timeout.
    liveness = 5.0
    with official_server(tiny_model_dir, KEY, "--liveness-timeout-seconds", str(liveness), "--log-level",
                         "info") as server:
        backend = OfficialBackend(server.url, KEY, device="cpu", timeout=120)
        try:
            prompt_then_idle(backend, 4 * liveness)
            log = server.log_text()
            assert "claimed session" in log, log[-3000:]
            assert "reaped" not in log, log[-3000:]
        finally:
            backend.close()


def test_the_undo_snapshot_is_taken_while_slicer_idles(tiny_model_dir):
    backend = LocalBackend(model_dir=tiny_model_dir, device="cpu", torch_threads=2)
    host, logic = prompt_then_idle(backend, 2.5)
    try:
        assert backend._engine._unsaved is None, "the undo snapshot still waits for the next prompt"  # noqa: SLF001
    finally:
        logic.close(wait_s=10)
