"""Reply bytes for a compact object, as a real model produces it, computed from each protocol's own encoder.

The synthetic test model predicts speckle, which compresses alike in every format; a real model
predicts a compact object and refines it locally. This scripts such an object at size L (a blob,
then lobes added and removed) and encodes every step's reply as each protocol would, no server:

* ours: the tight box of the changed voxels, bit-packed + zstd, in our frame
  (:mod:`nninteractive_slicer.protocol.wire`);
* official: the box nnInteractive wrote (the 192^3 patch around the prompt), uint8, blosc2 zstd, as
  ``nninteractive-server`` 2.6 sends it (its own ``pack_array``);
* 0.3 protocol: the whole mask, ``np.packbits`` + gzip.
HTTP headers are left out of all three.
"""

from __future__ import annotations

import numpy as np
import seed_protocol

from nninteractive_slicer.interface import box_slices, changed_box
from nninteractive_slicer.protocol.wire import encode_frame, pack_mask

PATCH = 192  # the official model's patch: what nnInteractive writes around a prompt


def _ellipsoid(shape: tuple[int, int, int], centre, radii) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return (sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1).astype(np.uint8)


def _patch_box(shape, centre):
    return tuple((max(0, int(c) - PATCH // 2), min(n, int(c) + PATCH // 2)) for c, n in zip(centre, shape))


def steps(shape: tuple[int, int, int], count: int = 10, seed: int = 0):
    """(mask after the step, the box nnInteractive wrote): a new object, then local refinements."""
    rng = np.random.default_rng(seed)
    centre = np.array(shape) * 0.45
    mask = _ellipsoid(shape, centre, np.array(shape) * (0.12, 0.15, 0.13))
    yield mask.copy(), _patch_box(shape, centre)
    surface = np.argwhere(mask ^ np.pad(mask, 1)[2:, 1:-1, 1:-1])  # voxels on the object's lower face
    for i in range(count - 1):
        at = surface[rng.integers(len(surface))]
        lobe = _ellipsoid(shape, at, (5, 8, 8))
        mask = np.maximum(mask, lobe) if i % 2 == 0 else mask * (1 - lobe)
        yield mask.copy(), _patch_box(shape, at)


def reply_bytes(shape: tuple[int, int, int]) -> list[dict]:
    import blosc2
    from nnInteractive.inference.remote.serialization import pack_array

    rows = []
    before = np.zeros(shape, np.uint8)
    for index, (mask, written) in enumerate(steps(shape)):
        tight = changed_box(before, mask)
        header = {"changed": True, "box": [list(r) for r in tight], "backend_ms": 123.4, "revision": index + 2,
                  "prompt_count": index + 1, "codec": "zstd"}
        ours = len(encode_frame(header, pack_mask(mask[box_slices(tight)], "zstd")))
        official = len(pack_array(mask[box_slices(written)], filters=[blosc2.Filter.NOFILTER]))
        rows.append({"step": "new object" if index == 0 else "refinement", "ours": ours, "official": official,
                     "seed_protocol": seed_protocol.prompt_reply_bytes(mask)})
        before = mask
    return rows


def summary(shape: tuple[int, int, int]) -> list[dict]:
    """Median bytes per step kind and protocol."""
    rows = reply_bytes(shape)
    out = []
    for step in ("new object", "refinement"):
        chosen = [r for r in rows if r["step"] == step]
        out.append({"step": step, "prompts": len(chosen),
                    **{k: int(np.median([r[k] for r in chosen])) for k in ("ours", "official", "seed_protocol")}})
    return out
