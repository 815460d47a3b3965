"""The module's Lib imports without qt, ctk, slicer.app or torch, under this Python and under Slicer's 3.12."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "SlicerNNInteractive"
LIB_DIR = MODULE_DIR / "SlicerNNInteractiveLib"

# Blocks qt, ctk, PythonQt and torch (None in sys.modules makes their import fail), imports every Lib
# module and the backend interface, and checks nothing heavy came in through the back door.
IMPORT_CHECK = """
import importlib, pkgutil, sys
for name in ("qt", "ctk", "PythonQt", "torch", "nnInteractive"):
    sys.modules[name] = None
import SlicerNNInteractiveLib
for info in pkgutil.iter_modules(SlicerNNInteractiveLib.__path__):
    importlib.import_module("SlicerNNInteractiveLib." + info.name)
import nninteractive_slicer.interface
import slicer
assert not hasattr(slicer, "app"), "slicer.app must not exist outside the Slicer application"
loaded = [m for m in ("torch", "qt", "ctk") if sys.modules.get(m) is not None]
assert not loaded, loaded
print("ok", sys.version_info[:2])
"""

FORBIDDEN_MODULES = {"qt", "ctk", "PythonQt", "torch", "slicer.util"}
FORBIDDEN_ATTRIBUTES = {("slicer", "app"), ("slicer", "mrmlScene"), ("slicer", "modules"), ("slicer", "util")}


def run_import_check(python: str, env: dict) -> subprocess.CompletedProcess:
    # The module folder only: the Lib must find nninteractive_slicer in <repo>/Backends by itself.
    env = {**env, "PYTHONPATH": str(MODULE_DIR)}
    return subprocess.run([python, "-c", IMPORT_CHECK], capture_output=True, text=True, env=env, timeout=300)


def test_the_lib_source_never_touches_qt_or_the_application():
    for path in LIB_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {node.module or ""} | {f"{node.module}.{alias.name}" for alias in node.names}
            else:
                names = set()
            assert not {n for n in names if n.split(".")[0] in FORBIDDEN_MODULES or n in FORBIDDEN_MODULES}, path
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) not in FORBIDDEN_ATTRIBUTES, f"{path}:{node.lineno}"


def test_the_lib_imports_without_qt_or_torch():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = run_import_check(sys.executable, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


def test_the_lib_imports_under_python_312(python312):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = run_import_check(str(python312), env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok (3, 12)"
