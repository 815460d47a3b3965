"""Make ``nninteractive_slicer`` importable in a source checkout as well as in the installed extension.

The installed extension ships the package next to the module's scripts (a folder Slicer already
puts on ``sys.path``); a source checkout keeps it in ``<repo>/Backends``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def ensure_backends_importable() -> None:
    if importlib.util.find_spec("nninteractive_slicer") is not None:
        return
    module_dir = Path(__file__).resolve().parents[1]
    for candidate in (module_dir, module_dir.parent / "Backends"):
        if (candidate / "nninteractive_slicer" / "__init__.py").is_file():
            sys.path.append(str(candidate))
            return
