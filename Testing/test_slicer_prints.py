"""nnInteractive's per-prompt prints go to debug records, not to Slicer's console or the CLI's output; other
prints are untouched. Runs in a fresh interpreter, as Slicer's console is the process's stdout."""

from __future__ import annotations

from slicer_host import quit_in_subprocess

SCRIPT = """
import logging, sys
import numpy as np
from nninteractive_slicer.backends.local import LocalBackend
from nninteractive_slicer.interface import Point
from synthetic import blob_centre, mr_like_image

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="LOG %(name)s %(message)s")
shape = (48, 64, 64)
with LocalBackend(model_dir={model!r}, device="cpu", torch_threads=1) as backend:
    backend.set_image(mr_like_image(shape, seed=1))
    backend.prompt(Point(tuple(blob_centre(shape)), True))
    print("the host's own line")
"""


def test_nninteractive_prints_become_debug_records_and_other_prints_stay(tiny_model_dir):
    done = quit_in_subprocess(SCRIPT.format(model=str(tiny_model_dir)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "the host's own line\n", done.stdout
    assert "LOG nninteractive_slicer.nninteractive Done. Total time" in done.stderr, done.stderr[-3000:]
