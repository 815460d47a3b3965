"""Installing what a backend kind lacks, after the user said yes once.

torch comes first, through Slicer's PyTorch extension (it picks the build matching the GPU driver),
then the pip packages. The installers are passed in (the widget's are Slicer's), so a failure in
the middle is reported in words, and the rest is not attempted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .backends import TORCH_REQUIREMENT

log = logging.getLogger(__name__)
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
                pip_install(requirement)
        except Exception as exc:  # pip or the network failed: say so, keep the module usable
            log.exception("nnInteractive: installing %s failed", requirement)
            return f"Installing {requirement} failed: {exc}. Check the network and the Python console."
    return done
