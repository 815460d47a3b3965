"""Where the web host finds the module's Lib.

``SlicerNNInteractiveLib`` is the Slicer module's Qt-free part; it ships with the Slicer extension, next to
the module, not in this pip package (the server and the CLI never need it). The web host runs from a source
checkout (the README's setup installs it editable), so the module folder is put on ``sys.path`` here, the
one place that knows the layout, as the Lib's own ``_backends_path`` finds this package from the module.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[3] / "SlicerNNInteractive"


def ensure_lib_importable() -> None:
    if importlib.util.find_spec("SlicerNNInteractiveLib") is not None:
        return
    if not (MODULE_DIR / "SlicerNNInteractiveLib" / "__init__.py").is_file():
        raise ImportError(
            "The web app needs the Slicer module's SlicerNNInteractiveLib: run it from a source checkout "
            f"(expected it in {MODULE_DIR})."
        )
    sys.path.insert(0, str(MODULE_DIR))
