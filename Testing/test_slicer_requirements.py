"""What each backend kind still needs installed, in Pythons that really lack torch, nnInteractive or the client.

Each case runs in a subprocess whose import path holds this environment's packages minus some (``-S``: no
site-packages of its own), so what is missing is missing for every import mechanism, as in a fresh Slicer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

NNINTERACTIVE_REQUIREMENT = "nninteractive>=2.6,<3"
CLIENT_REQUIREMENT = "nninteractive-client>=2.6,<3"

REPO = Path(__file__).resolve().parents[1]
SITE = Path(sysconfig.get_paths()["purelib"])
# Only the official client's part of the nnInteractive namespace, as `pip install nninteractive-client` leaves it.
CLIENT_ONLY = "client only"

REPORT = """
import json, sys
from SlicerNNInteractiveLib.backends import missing_requirements
print(json.dumps({kind: missing_requirements(kind) for kind in ("local", "slicer_server", "official")}))
assert "torch" not in sys.modules
"""


def site_without(tmp_path: Path, hidden: set[str]) -> Path:
    """A folder with links to this environment's packages, except the ``hidden`` top-level names."""
    site = tmp_path / "site"
    site.mkdir()
    for entry in SITE.iterdir():
        if entry.name not in hidden and entry.suffix != ".pth":
            (site / entry.name).symlink_to(entry)
    if CLIENT_ONLY in hidden:
        remote = site / "nnInteractive" / "inference" / "remote"
        remote.parent.mkdir(parents=True)
        remote.symlink_to(SITE / "nnInteractive" / "inference" / "remote")
    return site


def missing_in(site: Path) -> dict[str, list[str]]:
    path = [str(site), str(REPO / "Backends"), str(REPO / "SlicerNNInteractive")]
    code = f"import sys; sys.path[:0] = {path!r}\n" + REPORT
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("hidden", "expected"), [
    ({"torch", "nnInteractive"}, {"local": ["torch", NNINTERACTIVE_REQUIREMENT], "slicer_server": [],
                                  "official": [CLIENT_REQUIREMENT]}),
    ({"torch", "nnInteractive", CLIENT_ONLY}, {"local": ["torch", NNINTERACTIVE_REQUIREMENT], "slicer_server": [],
                                               "official": []}),
    ({"nnInteractive"}, {"local": [NNINTERACTIVE_REQUIREMENT], "slicer_server": [], "official": [CLIENT_REQUIREMENT]}),
    (set(), {"local": [], "slicer_server": [], "official": []}),
], ids=["bare", "official-client-only", "torch-only", "everything"])
def test_missing_requirements_name_what_is_not_installed(tmp_path, hidden, expected):
    assert missing_in(site_without(tmp_path, hidden)) == expected
