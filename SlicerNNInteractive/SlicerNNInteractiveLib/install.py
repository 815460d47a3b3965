"""Installing what a backend kind lacks, after the user said yes once.

torch comes first, through Slicer's PyTorch extension (it picks the build matching the GPU driver), asked for
the torch versions nnInteractive itself accepts (TORCH_REQUIREMENT, checked against nnInteractive's metadata in
CI). Then the pip packages, each installed with the torch now installed held fixed (``torch==<installed>`` in
the same command, so pip can never swap the GPU build for a PyPI one) and under the module's constraints file
(the nnInteractive stack at tested versions). The installers are passed in (the widget's are Slicer's), so a
failure in the middle is reported in words, and the rest is not attempted.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
# nnInteractive 2.6's own requirement on torch (Requires-Dist), in the form PyTorchUtils takes it.
TORCH_REQUIREMENT = ">=2.1.2,!=2.9.*"
CONSTRAINTS = Path(__file__).resolve().parents[1] / "Resources" / "constraints.txt"
INSTALLED = "Installed. Place the prompt again."
RECOMMENDED_INSTALLED = "Installed: the next connection to the server uses it."


def install_torch_through_pytorch_utils() -> bool:
    """torch from the PyTorch extension's logic, which picks the build matching the GPU driver; it does not ask
    again (the user said yes once). False when that extension is not installed."""
    try:
        import PyTorchUtils  # the PyTorch extension's module: only inside Slicer
    except ImportError:
        return False
    logic = PyTorchUtils.PyTorchUtilsLogic()
    return logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT) is not None


def install_question(missing: list[str], offer: str = "") -> str:
    """What the user is asked: what the backend needs, or (``offer``) what would make it faster."""
    if offer:
        return f"{offer} Install it now?"
    return f"This backend needs {', '.join(missing)}. Install now? It can take several minutes."


def installed_torch() -> str | None:
    """The version of the torch installed now (e.g. ``2.5.1+cu121``), or None."""
    importlib.invalidate_caches()
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def pip_arguments(requirement: str, torch_version: str | None) -> str:
    """What is given to pip (``slicer.util.pip_install``) for ``requirement``: the installed torch held fixed,
    and the module's constraints."""
    held = f" torch=={torch_version}" if torch_version else ""
    return f'{requirement}{held} -c "{CONSTRAINTS}"'


def install(
    missing: list[str],
    pip_install: Callable[[str], object],
    install_torch: Callable[[], bool] = install_torch_through_pytorch_utils,
    step: Callable[[str, int], None] = lambda requirement, index: None,
    done: str = INSTALLED,
) -> str:
    """Install ``missing`` in order (torch first); returns the message for the status line (``done`` when all
    went well)."""
    ordered = sorted(missing, key=lambda requirement: requirement != "torch")
    for index, requirement in enumerate(ordered):
        step(requirement, index)
        try:
            if requirement == "torch":
                if not install_torch():
                    return ("PyTorch was not installed: install the 'PyTorch' extension (Extensions Manager), "
                            "restart Slicer, then try again.")
            else:
                pip_install(pip_arguments(requirement, installed_torch()))
        except Exception as exc:  # pip or the network failed: say so, keep the module usable
            log.exception("nnInteractive: installing %s failed", requirement)
            return f"Installing {requirement} failed: {exc}. Check the network and the Python console."
    return done
