"""Files of the disk cache at rest: sealed with AES-GCM under the operator's key, or stored plain without one.

A file starts with a header that names its mode and, sealed, an id of its key, so a cache written without a
key is never read with one, nor one written with another key: such a file is simply unreadable, and the
image is uploaded again. The contents are sealed in segments (AES-GCM takes at most 2 GiB at once, and a
segment at a time keeps the peak memory near the image's size); each segment's nonce is the file's random
prefix and the segment's number, and its associated data binds the header, the file's name and whether it
is the last segment, so segments cannot be reordered, cut off or moved to another file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import os
import secrets
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

KEY_ENV = "NNINTERACTIVE_SLICER_CACHE_KEY"
KEY_BYTES = 32
MAGIC = b"NNISC1"
SEGMENT = 16 * 1024 * 1024
TAG = 16  # AES-GCM's authentication tag
_PLAIN, _SEALED = b"p", b"e"
HEADER = len(MAGIC) + 1 + 8 + 8  # magic, mode, key id, nonce prefix


class Unreadable(ValueError):
    """A file this server cannot read: another mode or key, damaged, or cut off."""


def load_cache_key(file: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The operator's 256-bit key from ``file`` or ``$NNINTERACTIVE_SLICER_CACHE_KEY``: 64 hex digits or the
    base64 of 32 bytes. None if neither is given; ValueError (which never quotes the key) if it is malformed."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    text = Path(file).read_text().strip() if file is not None else env.get(KEY_ENV, "").strip()
    if not text:
        if file is not None:
            raise ValueError(f"the key file {file} is empty")
        return None
    key = _decode_key(text)
    if key is None or len(key) != KEY_BYTES:
        raise ValueError(f"the cache key must be {KEY_BYTES} random bytes, written as 64 hex digits or in base64 "
                         "(make one with: python -c 'import secrets; print(secrets.token_hex(32))')")
    return key


def _decode_key(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        pass
    try:
        return base64.b64decode(text, altchars=b"-_" if ("-" in text or "_" in text) else None, validate=True)
    except (binascii.Error, ValueError):
        return None


class Sealer:
    """Writes and reads the disk cache's files, sealed under ``key`` or plain without one."""

    def __init__(self, key: bytes | None) -> None:
        self._aead = None
        self._names: bytes | None = None
        self.key_id = bytes(8)
        if key is not None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(key)
            self.key_id = hmac.new(key, b"nninteractive-slicer cache key id", hashlib.sha256).digest()[:8]
            self._names = hmac.new(key, b"nninteractive-slicer file names", hashlib.sha256).digest()

    @property
    def sealed(self) -> bool:
        return self._aead is not None

    def name(self, digest: str) -> str:
        """The file name of an image: its digest, or with a key a keyed hash of it, so that someone who can
        list the folder cannot tell whether it holds a scan they have."""
        if self._names is None:
            return digest
        return hmac.new(self._names, digest.encode(), hashlib.sha256).hexdigest()

    def write(self, f: BinaryIO, name: str, parts: Iterable[bytes | memoryview]) -> None:
        """Write ``parts`` (their bytes one after another) to ``f`` as the file called ``name``."""
        prefix = secrets.token_bytes(8) if self._aead is not None else bytes(8)
        header = MAGIC + (_SEALED if self._aead is not None else _PLAIN) + self.key_id + prefix
        f.write(header)
        if self._aead is None:
            for part in parts:
                f.write(part)
            return
        segments = _segments(parts)
        index, segment = 0, next(segments, b"")
        while True:
            following = next(segments, None)
            f.write(self._aead.encrypt(_nonce(prefix, index), bytes(segment),
                                       _associated(header, name, index, following is None)))
            if following is None:
                return
            index, segment = index + 1, following

    def read(self, f: io.BufferedIOBase, name: str, size: int) -> bytearray:
        """The contents of the file ``f`` (``size`` bytes) called ``name``; :class:`Unreadable` if it was not
        written by this mode and key, or was changed since."""
        header = f.read(HEADER)
        if len(header) != HEADER or not header.startswith(MAGIC):
            raise Unreadable("not a file of this cache")
        mode, key_id, prefix = header[len(MAGIC):len(MAGIC) + 1], header[-16:-8], header[-8:]
        if self._aead is None:
            if mode != _PLAIN:
                raise Unreadable("sealed with a key, and this server has none")
            out = bytearray(size - HEADER)
            if f.readinto(out) != len(out):
                raise Unreadable("cut off")
            return out
        if mode != _SEALED:
            raise Unreadable("stored without a key, and this server has one")
        if not hmac.compare_digest(key_id, self.key_id):
            raise Unreadable("sealed with another key")
        from cryptography.exceptions import InvalidTag

        body = size - HEADER
        count = max(1, -(-body // (SEGMENT + TAG)))
        if body < count * TAG:
            raise Unreadable("cut off")
        out = bytearray(body - count * TAG)
        for index in range(count):
            sealed = f.read(min(SEGMENT + TAG, body - index * (SEGMENT + TAG)))
            try:
                plain = self._aead.decrypt(_nonce(prefix, index), sealed,
                                           _associated(header, name, index, index == count - 1))
            except InvalidTag as exc:
                raise Unreadable("its contents do not match their seal (another key, or damaged)") from exc
            out[index * SEGMENT:index * SEGMENT + len(plain)] = plain
        return out


def _segments(parts: Iterable[bytes | memoryview]) -> Iterator[bytes | memoryview]:
    """``parts`` cut and joined into :data:`SEGMENT`-byte pieces (the last one shorter)."""
    pending = bytearray()
    for part in parts:
        view = memoryview(part).cast("B")
        while len(view):
            if not pending and len(view) >= SEGMENT:
                yield view[:SEGMENT]
                view = view[SEGMENT:]
                continue
            take = min(SEGMENT - len(pending), len(view))
            pending += view[:take]
            view = view[take:]
            if len(pending) == SEGMENT:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _associated(header: bytes, name: str, index: int, last: bool) -> bytes:
    return header + name.encode() + struct.pack(">I?", index, last)
