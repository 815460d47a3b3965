"""CI fails loudly when a check it is meant to run was skipped, e.g. for want of Slicer's Python 3.12."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECK_312 = "Testing/test_slicer_packaging.py::test_the_widget_compiles_under_python_312"


def run_pytest(*args: str, python312: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON312": python312}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)


def test_a_skipped_check_fails_the_run_with_no_skips(tmp_path):
    missing = str(tmp_path / "no-python3.12")
    plain = run_pytest(CHECK_312, python312=missing)
    assert plain.returncode == 0 and "1 skipped" in plain.stdout, plain.stdout
    ci = run_pytest("--no-skips", CHECK_312, python312=missing)
    assert ci.returncode == 1, ci.stdout
    assert "FAILED: 1 check(s) meant to run were skipped" in ci.stdout
    assert "Python 3.12 not found: set PYTHON312" in ci.stdout

