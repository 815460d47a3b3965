"""What a session costs in memory, and how much the server lets all sessions hold together.

A session holds about 18-20 bytes per voxel of its image (measured for issue 13: nnInteractive's float32
image and interaction channels, its target buffer, our mask and its undo copy), so a 1024^3 image asks
for about 20 GB. Images themselves are counted by the image cache's own budget.
"""

from __future__ import annotations

import math
import os
from typing import Any

SESSION_BYTES_PER_VOXEL = 20
HOST_FRACTION = 0.5  # of the machine's memory; the rest is the model, the image cache, the OS
DEVICE_FRACTION = 0.8  # of the GPU's memory; the rest is the model and its activations


def session_bytes(shape: tuple[int, ...]) -> int:
    return math.prod(shape) * SESSION_BYTES_PER_VOXEL


def default_budget(device: Any) -> int:
    """A safe share of what the machine has: half its memory and, on a GPU, 80% of the GPU's."""
    budget = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * HOST_FRACTION)
    if getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        _, total = torch.cuda.mem_get_info(device)
        budget = min(budget, int(total * DEVICE_FRACTION))
    return budget


def gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB"
