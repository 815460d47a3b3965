"""A torch-free Python 3.12 environment (Slicer 5.10's Python) for the client side of the project."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

PYTHON312 = Path(os.environ.get("PYTHON312", Path.home() / ".pyenv/versions/3.12.1/bin/python3.12"))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def python312(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh 3.12 venv with what Slicer ships that the client side needs (numpy, requests,
    Slicer's MRML as slicer-core), the official client, and pytest: no torch, no nnInteractive."""
    if not PYTHON312.exists():
        pytest.skip(f"Python 3.12 not found at {PYTHON312} (set PYTHON312 to its path)")
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



