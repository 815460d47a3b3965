"""Quitting Slicer while the local model loads or runs a prompt ends the process cleanly, at every point.

At quit, CTK calls ``Py_Finalize()`` under the module's daemon threads; Python ends them with
``pthread_exit``, which aborts the process when it unwinds through torch's C++ frames ("terminate called
without an active exception"). The widget's ``cleanup()`` (Logic.close) therefore stops taking work and
waits, bounded, for the device thread's current call. Each quit here runs in a fresh interpreter on the
emulated Slicer host and real MRML: a prompt is enqueued (the first one builds the backend, loading the
model), the loop runs for a while, then cleanup and interpreter exit.
"""

from __future__ import annotations

import pytest
from slicer_host import quit_in_subprocess

SCRIPT = """
import sys, time
import numpy as np
from slicer_host import SlicerHost
from slicer_scene import make_scene
from synthetic import blob_centre, mr_like_image
from SlicerNNInteractiveLib import PromptPipeline, point_prompt
from SlicerNNInteractiveLib.automatic import BackendChoice
from SlicerNNInteractiveLib.backends import BackendConfig
from SlicerNNInteractiveLib.logic import QueuedPrompt, SlicerNNInteractiveLogic

s = make_scene()
shape = (128, 160, 160)
volume = s.volume(mr_like_image(shape, seed=1))
pipeline = PromptPipeline(s.scene, None, s.editor_node(volume, s.segmentation(volume)), s.app_logic)
choice = BackendChoice("local", BackendConfig("local", device="cpu", model={model!r}))
logic = SlicerNNInteractiveLogic(pipeline, choice)
host = SlicerHost(qt_ms=10)
timer = host.timer(logic.poll, 10)
world = np.array(blob_centre(shape)[::-1], dtype=float)
for _ in range(3):
    logic.enqueue(QueuedPrompt(lambda g: point_prompt(world, g, True)))
timer.start()
host.run(until=lambda: logic._running is not None, timeout_s=600)  # the first prompt reached the backend
host.run(seconds={delay})
logic.close()  # the widget's cleanup(); then the interpreter finalises
print("quit at", {delay}, "running" if logic.backend is not None else "", flush=True)
"""

# Seconds after the first prompt reached the backend (the image upload, then three prompts).
DELAYS_S = [0.0, 0.3, 1.0, 2.0]


@pytest.mark.parametrize("delay", DELAYS_S)
def test_quitting_during_a_model_load_or_a_prompt_exits_cleanly(tiny_model_dir, delay):
    done = quit_in_subprocess(SCRIPT.format(model=str(tiny_model_dir), delay=delay))
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert "terminate called" not in done.stderr
