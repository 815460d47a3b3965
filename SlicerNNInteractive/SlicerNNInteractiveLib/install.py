"""Installing what a backend kind lacks, after the user said yes once.

torch comes first, through Slicer's PyTorch extension (it picks the build matching the GPU driver),
then the pip packages. The installers are passed in (the widget's are Slicer's), so a failure in
the middle is reported in words, and the rest is not attempted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)
INSTALLED = "Installed. Place the prompt again."


def install(
    missing: list[str],
    install_torch: Callable[[], bool],
    pip_install: Callable[[str], object],
    step: Callable[[str, int], None] = lambda requirement, index: None,
) -> str:
    """Install ``missing`` in order (torch first); returns the message for the status line."""
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
    return INSTALLED
