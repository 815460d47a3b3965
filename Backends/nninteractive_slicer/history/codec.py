"""How masks travel inside a history file: digests, and bit-packed, zlib-compressed, base64 text.

Every mask and crop is a uint8 0/1 array in array order ``(k, j, i)`` (``i`` fastest, as
``arrayFromVolume`` and SimpleITK's ``GetArrayFromImage`` give it). Its digest is the SHA-256 of
those bytes, so any reader with numpy can check a mask without knowing how it was stored.
"""

from __future__ import annotations

import base64
import hashlib
import zlib

import numpy as np

DIGEST_PREFIX = "sha256:"
# zlib's default: level 9 took 15x longer on a speckled 256x256x130 mask (0.58 s vs 0.04 s) for 20% fewer bytes.
ZLIB_LEVEL = 6


def mask_digest(mask: np.ndarray) -> str:
    """SHA-256 of the mask as uint8 0/1 bytes in C order."""
    bits = np.ascontiguousarray(mask != 0).view(np.uint8)
    return DIGEST_PREFIX + hashlib.sha256(memoryview(bits).cast("B")).hexdigest()


def voxel_digest(image: np.ndarray) -> str:
    """SHA-256 of the voxels as little-endian bytes in C order (shape and dtype are stored beside it)."""
    data = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("<"))
    return DIGEST_PREFIX + hashlib.sha256(memoryview(data).cast("B")).hexdigest()


def encode_mask(mask: np.ndarray) -> str:
    """0/1 array -> base64 text of zlib(packbits(C order)); the shape is stored elsewhere."""
    packed = np.packbits(np.ascontiguousarray(mask, dtype=bool).ravel())
    return base64.b64encode(zlib.compress(packed.tobytes(), ZLIB_LEVEL)).decode("ascii")


def decode_mask(text: str, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`encode_mask`; raises ValueError when the text does not hold ``shape`` voxels."""
    try:
        packed = np.frombuffer(zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True)), np.uint8)
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"not base64 zlib data ({exc})") from exc
    count = int(np.prod(shape))
    if packed.size != (count + 7) // 8:
        raise ValueError(f"holds {packed.size * 8} bits, {count} expected for shape {tuple(shape)}")
    return np.unpackbits(packed, count=count).reshape(shape)
