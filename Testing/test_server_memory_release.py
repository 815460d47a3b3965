"""Memory a closed session freed goes back to the system (issue 23.2: the soak's resident memory crept up with
freed blocks that glibc kept in its arenas)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import numpy as np

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    first = np.ones(1 << 18)  # a freed 2 MiB block raises glibc's mmap threshold: later ones come from the heap
    del first
    blocks, keep = [], []
    for _ in range(150):
        blocks.append(np.ones(1 << 17))  # 1 MiB, from the heap now
        keep.append(bytearray(2000))  # small blocks between them keep the heap from shrinking at its top
    del blocks
    held = rss_mb()
    from nninteractive_slicer.server.memory import release_freed_memory  # imported late: its imports allocate

    release_freed_memory()
    print(held, rss_mb())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_blocks_below_the_heap_top_go_back_to_the_system():
    held, after = map(float, subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                                            check=True).stdout.split())
    assert held - after > 100, (held, after)  # of the 150 MiB freed, not held resident
