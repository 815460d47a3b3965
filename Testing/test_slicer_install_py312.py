"""On Python 3.12 (Slicer's), exactly the module's install commands give a working local backend.

torch is installed first (PyTorchUtils' part; here the CPU wheel), then the module's own ``install()`` runs with a
``pip_install`` that does what ``slicer.util.pip_install`` does (split the arguments, run pip install): the
installed torch must stay as it was, the nnInteractive stack must come at the constraints file's versions,
and the local backend must run a prompt on the tiny model.
"""

from __future__ import annotations

import subprocess

import pytest
from fixtures_python312 import MISSING, PYTHON312, REPO, run_python312

SCRIPT = """
import importlib.metadata, shlex, subprocess, sys
from SlicerNNInteractiveLib.backends import missing_requirements
from SlicerNNInteractiveLib.install import CONSTRAINTS, INSTALLED, install

def pip_install(arguments):  # slicer.util.pip_install
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *shlex.split(arguments)], check=True)

torch = importlib.metadata.version("torch")
message = install(missing_requirements("local"), pip_install, install_torch=lambda: True)
assert message == INSTALLED, message
assert importlib.metadata.version("torch") == torch, "the installed torch was replaced"
for line in CONSTRAINTS.read_text().splitlines():
    if line.strip() and not line.startswith("#"):
        name, version = line.split("==")
        assert importlib.metadata.version(name) == version, (name, importlib.metadata.version(name))
assert missing_requirements("local") == []
from nninteractive_slicer.backends.local import LocalBackend
from nninteractive_slicer.interface import Point
from synthetic import blob_centre, mr_like_image
shape = (48, 64, 64)
with LocalBackend(model_dir=sys.argv[1], device="cpu", torch_threads=2) as backend:
    backend.set_image(mr_like_image(shape, seed=1))
    backend.prompt(Point(tuple(blob_centre(shape)), True))
    assert backend.get_mask().any()
print("ok", torch)
"""


@pytest.mark.skipif(PYTHON312 is None, reason=MISSING)
def test_the_modules_install_commands_give_a_working_local_backend_on_python_312(tmp_path, tiny_model_dir):
    venv = tmp_path / "slicer-python"
    subprocess.run([str(PYTHON312), "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # What Slicer ships that the module relies on (its MRML and VTK as slicer-core), then torch as PyTorchUtils would.
    shipped = ["numpy", "requests", "slicer-core", "torch==2.13.0"]
    subprocess.run([str(python), "-m", "pip", "install", "-q", *shipped], check=True, cwd=REPO)
    done = run_python312(python, "-c", SCRIPT, str(tiny_model_dir), timeout=1500)
    assert done.returncode == 0 and "ok 2.13.0" in done.stdout, done.stdout[-2000:] + done.stderr[-4000:]
