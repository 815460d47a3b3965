"""The wire format: lossless, bounded against bombs, and usable by a client that has only numpy and requests."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from fixtures_remote import ALICE_KEY

from nninteractive_slicer.protocol import wire


@pytest.mark.parametrize("codec", wire.AVAILABLE_CODECS)
def test_masks_and_image_chunks_round_trip(codec):
    rng = np.random.default_rng(0)
    mask = (rng.random((7, 13, 5)) > 0.7).astype(np.uint8)  # not a multiple of 8 voxels
    np.testing.assert_array_equal(wire.unpack_mask(wire.pack_mask(mask, codec), mask.shape, codec), mask)
    for dtype in ("uint8", "int16", ">f4", "float64"):  # big-endian input travels little-endian
        values = (rng.normal(0, 1000, 999)).astype(dtype)
        decoded = wire.decode_image_chunk(wire.encode_image_chunk(values, codec), values.size,
                                          np.dtype(dtype).name, codec)
        np.testing.assert_array_equal(decoded, values)


@pytest.mark.parametrize("codec", wire.AVAILABLE_CODECS)
def test_decompression_stops_at_the_expected_size(codec):
    bomb = wire.compress(b"\0" * (8 << 20), codec)
    with pytest.raises(wire.WireError, match="more than"):
        wire.decompress(bomb, codec, 1000)
    with pytest.raises(wire.WireError):
        wire.decompress(bomb[: len(bomb) // 2], codec, 8 << 20)


def test_frames_reject_what_is_not_a_frame():
    header, payload = wire.decode_frame(wire.encode_frame({"a": 1}, b"xyz"))
    assert header == {"a": 1} and payload == b"xyz"
    bad = (b"", b"NNIS", b"JUNK\0\0\0\2{}", b"NNIS\xff\xff\xff\xff{}", b"NNIS\0\0\0\2[]", b"NNIS\0\0\0\2\xff\xfe")
    for body in bad:
        with pytest.raises(wire.WireError):
            wire.decode_frame(body)


def test_the_digest_covers_voxels_dtype_shape_and_spacing():
    image = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    digest = wire.image_digest(image, (1, 1, 1))
    assert digest == wire.image_digest(image.astype(">i2"), (1.0, 1.0, 1.0))  # same values, same address
    others = [image.astype(np.int32), image.reshape(3, 2, 4), image + (image == 5)]
    assert digest not in {wire.image_digest(o, (1, 1, 1)) for o in others}
    assert digest != wire.image_digest(image, (1, 1, 2))


def test_a_client_with_only_numpy_and_requests_works_without_torch(remote_server):
    """3D Slicer may lack zstandard and lz4: the client falls back to zlib, and never imports torch."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["zstandard"] = None  # as if not installed
        sys.modules["lz4"] = None
        sys.path.insert(0, "Testing")
        from synthetic import blob_centre, mr_like_image
        from nninteractive_slicer.protocol import wire
        from nninteractive_slicer.interface import Point
        from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
        assert wire.AVAILABLE_CODECS == ("zlib", "none"), wire.AVAILABLE_CODECS
        image = mr_like_image((32, 40, 48), seed=77)
        with SlicerServerBackend({remote_server.url!r}, {ALICE_KEY!r}, timeout=120) as backend:
            backend.set_image(image)
            result = backend.prompt(Point(blob_centre(image.shape)))
            assert result.changed and backend.stats.image_uploads == 1
        assert "torch" not in sys.modules and "nnInteractive" not in sys.modules
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.stdout.strip() == "ok", run.stderr[-3000:]
