"""A busy CPU beside the servers: processes that spin at the benchmark's own priority, started and stopped by
the benchmark, so both servers meet the same load (issue 23, section 3)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """``processes`` pure-Python busy loops (one per core keeps every core half taken from the servers)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
                for _ in range(processes)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait(timeout=30)
