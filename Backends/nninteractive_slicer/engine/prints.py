"""nnInteractive prints about five lines per prompt (progress, timings, coordinates), even with verbose=False.
Inside Slicer they fill the Python console, and in ``nninteractive-slicer segment`` and ``replay`` they land
between the progress lines. :func:`route_nninteractive_prints` sends what nnInteractive's own code prints to
debug records of the ``nninteractive_slicer.nninteractive`` logger (as the server does with all it prints), and
leaves every other print where it was going.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

LOGGER = logging.getLogger("nninteractive_slicer.nninteractive")
PACKAGE = "nnInteractive"


class _RoutedStdout:
    """Wraps the stdout in place: a write whose caller is nnInteractive's code becomes a debug record."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == PACKAGE or caller.startswith(PACKAGE + "."):
            if text.strip():
                LOGGER.debug("%s", text.rstrip())
            return len(text)
        return self.inner.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding ... of the stream it wraps
        return getattr(self.inner, name)


def route_nninteractive_prints() -> None:
    """Install the routing on ``sys.stdout`` (once; a stdout replaced later is left alone)."""
    if not isinstance(sys.stdout, _RoutedStdout) and sys.stdout is not None:
        sys.stdout = _RoutedStdout(sys.stdout)
