"""The wire format shared by the server and its client (:mod:`..backends.slicer_server`): frames, codecs, packed
masks, image chunks, digests.

Imports numpy and the stdlib only (3D Slicer loads it); ``zstandard`` and ``lz4`` are used when
installed, and zlib is always there, so a client without them still talks to any server.

Frame
    A binary body: ``b"NNIS"``, the length of a JSON header as a big-endian uint32, the UTF-8 JSON
    header, then the payload. Small prompts and all replies of the server that carry no array are
    plain JSON; frames carry arrays (image chunks, masks, crops, changed regions).

Masks
    0/1 arrays travel bit-packed (``np.packbits`` of the C-order array), then compressed.
    Measured on prompt replies at 256x256x130 (64^3 changed box): 32 KB packed, 4.4 KB with zstd-1,
    5.5 KB with zlib-1, 8.9 KB with lz4; unpacked uint8 with zstd-1 is 6.2 KB. Masks are small, so
    they are compressed harder than images: a compact object's first reply (20.6 KB packed) is
    3.3 KB with zstd-1 in 0.13 ms and 2.7 KB with zstd-9 in 0.37 ms (zlib-9: 2.8 KB).

Images
    Never downcast. The C-order, little-endian array is cut into chunks of whole elements; each
    chunk is byte-shuffled (byte 0 of every element, then byte 1, ...) and compressed. Shuffling
    took the noisy float32 test image from 30.5 MB to 26.6 MB with zstd-1 (34.1 MB raw).

Digest
    Images are content-addressed by SHA-256 over a tag, dtype, shape, spacing and the bytes, so
    the same voxels with another spacing are another image.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .bodies import ChangedRegion

zstandard: Any = None  # optional on the client: see register_optional_codecs()
lz4_frame: Any = None

MAGIC = b"NNIS"
MAX_HEADER_BYTES = 64 * 1024
FRAME_CONTENT_TYPE = "application/octet-stream"
DIGEST_TAG = b"nninteractive-slicer-image-v1"


class WireError(ValueError):
    """A body that does not decode: bad frame, unknown codec, wrong or truncated payload."""


# -- codecs --------------------------------------------------------------------------------------
def _zlib_decompress(data: bytes, limit: int) -> bytes:
    try:
        return zlib.decompressobj().decompress(data, limit + 1)
    except zlib.error as exc:
        raise WireError(f"zlib payload does not decompress: {exc}") from exc


def _zstd_decompress(data: bytes, limit: int) -> bytes:
    # Read from a stream: one-shot decompress() trusts the size declared in the frame.
    out = bytearray()
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            while len(out) <= limit:
                block = reader.read(min(limit + 1 - len(out), 1 << 24))
                if not block:
                    break
                out += block
    except zstandard.ZstdError as exc:
        raise WireError(f"zstd payload does not decompress: {exc}") from exc
    return bytes(out)


def _lz4_decompress(data: bytes, limit: int) -> bytes:
    try:
        return lz4_frame.LZ4FrameDecompressor().decompress(data, max_length=limit + 1)
    except RuntimeError as exc:
        raise WireError(f"lz4 payload does not decompress: {exc}") from exc


Compressor = Callable[[bytes, bool], bytes]  # (data, small: compress harder, for masks)
Decompressor = Callable[[bytes, int], bytes]
_CODECS: dict[str, tuple[Compressor, Decompressor]] = {}
AVAILABLE_CODECS: tuple[str, ...] = ()  # best first, by the measurements above


def register_optional_codecs() -> tuple[str, ...]:
    """Use zstandard and lz4 if they can be imported now: 3D Slicer installs zstandard on demand, after this
    module was first imported. Returns the codecs available."""
    global zstandard, lz4_frame, AVAILABLE_CODECS
    try:
        import zstandard
    except ImportError:
        zstandard = None
    try:
        import lz4.frame as lz4_frame
    except ImportError:
        lz4_frame = None
    _CODECS.clear()
    if zstandard is not None:
        _CODECS["zstd"] = (lambda b, small: zstandard.ZstdCompressor(level=9 if small else 1).compress(b),
                           _zstd_decompress)
    if lz4_frame is not None:
        _CODECS["lz4"] = (lambda b, small: lz4_frame.compress(b), _lz4_decompress)
    _CODECS["zlib"] = (lambda b, small: zlib.compress(b, 9 if small else 1), _zlib_decompress)
    _CODECS["none"] = (lambda b, small: bytes(b), lambda b, limit: bytes(b[: limit + 1]))
    AVAILABLE_CODECS = tuple(_CODECS)
    return AVAILABLE_CODECS


register_optional_codecs()


def choose_codec(offered: Any, fallback: str = "zlib") -> str:
    """The best codec of ours that ``offered`` (a list or a comma-separated string) also names."""
    if isinstance(offered, str):
        offered = [c.strip() for c in offered.split(",")]
    names = set(offered or ())
    return next((c for c in AVAILABLE_CODECS if c in names), fallback)


def compress(data: bytes, codec: str, small: bool = False) -> bytes:
    """``small``: the data is small (a mask), so spend more effort on it."""
    if codec not in _CODECS:
        raise WireError(f"Unknown codec {codec!r}; this side supports {', '.join(AVAILABLE_CODECS)}.")
    return _CODECS[codec][0](data, small)


def decompress(data: bytes, codec: str, size: int) -> bytes:
    """Decompress to exactly ``size`` bytes, never allocating much more (compression bombs stop at size + 1)."""
    if codec not in _CODECS:
        raise WireError(f"Unknown codec {codec!r}; this side supports {', '.join(AVAILABLE_CODECS)}.")
    out = _CODECS[codec][1](data, size)
    if len(out) != size:
        raise WireError(f"The {codec} payload holds {'more than ' if len(out) > size else ''}{len(out)} bytes, "
                        f"expected {size}: it is truncated or does not match its header.")
    return out


# -- frames --------------------------------------------------------------------------------------
def encode_frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack(">I", len(head)) + head + payload


def decode_frame(body: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a frame into its JSON header (a dict) and payload."""
    if len(body) < 8 or body[:4] != MAGIC:
        raise WireError("The body is not a frame: it must start with b'NNIS' and a 4-byte header length.")
    (length,) = struct.unpack(">I", body[4:8])
    if length > MAX_HEADER_BYTES or 8 + length > len(body):
        raise WireError(f"The frame declares a {length}-byte header but the body has {len(body) - 8} bytes after "
                        f"the prefix (at most {MAX_HEADER_BYTES}).")
    try:
        header = json.loads(body[8 : 8 + length])
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"The frame header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise WireError("The frame header must be a JSON object.")
    return header, body[8 + length :]


# -- masks ---------------------------------------------------------------------------------------
def pack_mask(mask: np.ndarray, codec: str) -> bytes:
    """A 0/1 array, bit-packed in C order and compressed."""
    return compress(np.packbits(np.ascontiguousarray(mask, dtype=np.uint8).reshape(-1)).tobytes(), codec, small=True)


def unpack_mask(payload: bytes, shape: tuple[int, ...], codec: str) -> np.ndarray:
    """The uint8 0/1 array of ``shape`` from :func:`pack_mask`'s output."""
    count = math.prod(shape)
    bits = np.frombuffer(decompress(payload, codec, (count + 7) // 8), dtype=np.uint8)
    return np.unpackbits(bits, count=count).reshape(shape)


# -- replies -------------------------------------------------------------------------------------
def read_changed_region(header: ChangedRegion, payload: bytes, shape: tuple[int, int, int]
                        ) -> tuple[tuple[tuple[int, int], ...], np.ndarray] | None:
    """The changed box and its patch from a prompt or undo reply, checked against the image's ``shape``
    before anything is applied: None if nothing changed, WireError if the box or the patch does not fit."""
    if not header.changed:
        return None
    box = header.box
    if not (box is not None and len(box) == 3 and all(len(r) == 2 and 0 <= r[0] < r[1] <= n
                                                        for r, n in zip(box, shape))):
        raise WireError(f"The reply's changed box {box!r} is not a box inside the image {list(shape)}.")
    region = tuple((lo, hi) for lo, hi in box)
    return region, unpack_mask(payload, tuple(hi - lo for lo, hi in region), header.codec)


# -- images --------------------------------------------------------------------------------------
def wire_dtype(dtype: np.dtype) -> np.dtype:
    """The little-endian dtype an array of ``dtype`` travels as."""
    return np.dtype(dtype).newbyteorder("<")


def image_digest(image: np.ndarray, spacing: tuple[float, float, float]) -> str:
    """Content address of an image: SHA-256 over dtype, shape, spacing and the little-endian C-order bytes."""
    array = np.ascontiguousarray(image, dtype=wire_dtype(image.dtype))
    meta = json.dumps([array.dtype.name, list(array.shape), [float(s) for s in spacing]]).encode()
    digest = hashlib.sha256(DIGEST_TAG + b"\0" + meta + b"\0")
    digest.update(memoryview(array.reshape(-1)).cast("B"))
    return digest.hexdigest()


def chunk_ranges(count: int, chunk_elements: int) -> Iterator[tuple[int, int]]:
    """Element ranges ``[start, stop)`` of the chunks of a flattened image."""
    for start in range(0, count, chunk_elements):
        yield start, min(start + chunk_elements, count)


def chunk_count(count: int, chunk_elements: int) -> int:
    return -(-count // chunk_elements)


def encode_image_chunk(flat: np.ndarray, codec: str) -> bytes:
    """Byte-shuffle and compress a run of elements of the flattened, little-endian image."""
    flat = np.ascontiguousarray(flat, dtype=wire_dtype(flat.dtype))
    shuffled = flat.view(np.uint8).reshape(-1, flat.dtype.itemsize).T
    return compress(np.ascontiguousarray(shuffled).tobytes(), codec)


def decode_image_chunk(payload: bytes, count: int, dtype: str, codec: str) -> np.ndarray:
    """The ``count`` elements of ``dtype`` that :func:`encode_image_chunk` encoded."""
    wire = wire_dtype(np.dtype(dtype))
    raw = np.frombuffer(decompress(payload, codec, count * wire.itemsize), dtype=np.uint8)
    return np.ascontiguousarray(raw.reshape(wire.itemsize, count).T).view(wire).reshape(count)
