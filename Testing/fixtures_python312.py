"""A torch-free Python 3.12 environment (Slicer 5.10's Python) for the client side of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_python312() -> Path | None:
    """Slicer's Python, as the README's Tests section says: $PYTHON312 if set, else python3.12 on PATH, else
    the newest pyenv 3.12."""
    if "PYTHON312" in os.environ:  # what the user set, or nothing: no silent fallback
        candidates = [os.environ["PYTHON312"]]
    else:
        pyenv = sorted((Path.home() / ".pyenv" / "versions").glob("3.12.*/bin/python3.12"), reverse=True)
        candidates = [shutil.which("python3.12"), *map(str, pyenv)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and _is_python312(candidate):
            return Path(candidate)
    return None


def _is_python312(python: str) -> bool:
    """Whether it runs and is 3.12: a pyenv shim on PATH exists but may refuse to run."""
    try:
        done = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    except OSError:
        return False
    return done.returncode == 0 and done.stdout.strip() == "(3, 12)"


PYTHON312 = find_python312()
MISSING = "Python 3.12 not found: set PYTHON312 to its path (README, Tests); CI fails on this skip"


@pytest.fixture(scope="session")
def python312(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh 3.12 venv with what Slicer ships that the client side needs (numpy, requests,
    Slicer's MRML as slicer-core), the official client, and pytest: no torch, no nnInteractive."""
    if PYTHON312 is None:
        pytest.skip(MISSING)
    venv = tmp_path_factory.mktemp("py312") / "venv"
    subprocess.run([str(PYTHON312), "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(REPO / "scripts" / "constraints.txt"),
                    "numpy", "requests", "pytest", "slicer-core", "nninteractive-client"], check=True)
    return python


def run_python312(python: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the 3.12 python with the repo's client code importable (as the Slicer module arranges it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = os.pathsep.join(str(REPO / p) for p in ("Backends", "Testing", "SlicerNNInteractive"))
    return subprocess.run([str(python), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)



