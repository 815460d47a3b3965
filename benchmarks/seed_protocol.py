"""Bytes the original extension's 0.3 protocol would have moved, computed from the same arrays (no server).

It uploaded the image as a raw ``.npy``, scribbles and lassos as full-volume gzipped ``.npy`` masks,
and answered every prompt with the whole mask, ``np.packbits`` + gzip.
"""

from __future__ import annotations

import gzip
import io

import numpy as np


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def image_upload_bytes(image: np.ndarray) -> int:
    return len(npy_bytes(image))


def prompt_reply_bytes(full_mask: np.ndarray) -> int:
    return len(gzip.compress(np.packbits(full_mask.astype(bool)).tobytes()))


def mask_prompt_upload_bytes(shape: tuple[int, int, int], box, crop: np.ndarray) -> int:
    """A scribble or lasso sent as a full-size volume."""
    full = np.zeros(shape, np.uint8)
    full[tuple(slice(lo, hi) for lo, hi in box)] = crop
    return len(gzip.compress(npy_bytes(full)))
