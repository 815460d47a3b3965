"""Progress for long runs: a bar redrawn in place on a terminal, one plain line per step otherwise (logs, CI)."""

from __future__ import annotations

import sys
from typing import TextIO

BAR_WIDTH = 30


class Progress:
    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._open_bar = False

    def step(self, done: int, total: int, text: str) -> None:
        if self.tty:
            filled = BAR_WIDTH * done // max(total, 1)
            self.stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} {text[:60]:<60}")
            self._open_bar = done < total
            if not self._open_bar:
                self.stream.write("\n")
        else:
            self.stream.write(f"{done}/{total} {text}\n")
        self.stream.flush()

    def log(self, text: str) -> None:
        if self._open_bar:
            self.stream.write("\n")
            self._open_bar = False
        self.stream.write(text + "\n")
        self.stream.flush()
