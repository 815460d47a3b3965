"""Image upload: one pass gives the wire digest, concurrent chunks rebuild the image, progress, early refusal."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config
from synthetic import mr_like_image

from nninteractive_slicer.backends import image_upload
from nninteractive_slicer.backends.image_upload import EncodedImage
from nninteractive_slicer.backends.slicer_server import SlicerServerBackend, check_image_fits
from nninteractive_slicer.errors import InvalidPromptError
from nninteractive_slicer.protocol.wire import decode_frame, decode_image_chunk, image_digest
from nninteractive_slicer.server.config import Limits

SPACING = (1.5, 0.8, 0.8)


def images() -> list[np.ndarray]:
    base = mr_like_image((20, 36, 44), seed=3)
    return [base, (base * 100).astype(np.int16), (base * 100).astype(">i2"), base[:, ::2, 1:].copy(), base[:, ::2]]


@pytest.mark.parametrize("index", range(5), ids=["float32", "int16", "big-endian", "copy", "strided view"])
def test_one_pass_gives_the_digest_of_the_wire_format(index):
    image = images()[index]
    encoded = EncodedImage(image, SPACING, "zlib", chunk_bytes=3000)
    try:
        assert len(encoded.ranges) > 10
        assert encoded.digest == image_digest(image, SPACING)
    finally:
        encoded.close()


def test_chunks_go_concurrently_and_rebuild_the_image_exactly():
    image = (mr_like_image((24, 40, 40), seed=4) * 50).astype(np.int16)
    encoded = EncodedImage(image, SPACING, "zlib", chunk_bytes=4096, workers=3)
    received: dict[int, bytes] = {}
    lock = threading.Lock()
    in_flight = peak = 0
    seen_progress: list[int] = []

    def put(index: int, frame: bytes) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            seen_progress.append(encoded.progress().sent_bytes)
        time.sleep(0.002)  # a request on the wire: other senders go meanwhile
        with lock:
            assert index not in received
            received[index] = frame
            in_flight -= 1

    encoded.send(put)
    encoded.close()
    assert peak > 1
    flat = np.empty(image.size, image.dtype.newbyteorder("<"))
    for index, frame in received.items():
        header, payload = decode_frame(frame)
        start, stop = encoded.ranges[index]
        assert header["chunk_elements"] == encoded.chunk_elements and header["shape"] == list(image.shape)
        flat[start:stop] = decode_image_chunk(payload, stop - start, header["dtype"], header["codec"])
    assert sorted(received) == list(range(len(encoded.ranges)))
    np.testing.assert_array_equal(flat.reshape(image.shape), image)
    assert seen_progress == sorted(seen_progress) and seen_progress[0] == 0
    assert encoded.progress().sent_bytes == encoded.progress().total_bytes == image.nbytes
    assert encoded.progress().fraction == 1.0
    assert encoded.frame_bytes == sum(map(len, received.values()))


def test_compression_runs_at_most_a_window_ahead_of_sending(monkeypatch):
    encoded_chunks: list[int] = []
    original = EncodedImage._encode

    def counting(self, index):
        encoded_chunks.append(index)
        return original(self, index)

    monkeypatch.setattr(EncodedImage, "_encode", counting)
    image = mr_like_image((20, 40, 40), seed=5)
    encoded = EncodedImage(image, SPACING, "zlib", chunk_bytes=2048, workers=2)
    time.sleep(0.2)  # the look-ahead would run on here if it were not bounded
    assert len(encoded_chunks) == encoded.window < len(encoded.ranges)
    taken: list[int] = []

    def put(index: int, frame: bytes) -> None:
        taken.append(index)  # up to 2 more chunks are taken by the other sender and not put yet
        assert len(encoded_chunks) <= len(taken) + encoded.window + 2

    encoded.send(put)
    encoded.close()
    assert sorted(encoded_chunks) == list(range(len(encoded.ranges)))


def test_a_failed_chunk_stops_the_upload_and_is_raised():
    encoded = EncodedImage(mr_like_image((20, 40, 40), seed=6), SPACING, "zlib", chunk_bytes=2048, workers=2)
    sent: list[int] = []

    def put(index: int, frame: bytes) -> None:
        if index == 3:
            raise ConnectionError("link down")
        sent.append(index)

    with pytest.raises(ConnectionError, match="link down"):
        encoded.send(put)
    encoded.close()
    assert len(sent) < len(encoded.ranges) - 1


def test_chunks_are_at_most_the_servers_limit_and_at_most_four_mib():
    image = np.ones((64, 128, 128), np.float32)  # 4 MiB
    assert EncodedImage(image, SPACING, "zlib", chunk_bytes=2**30).chunk_elements * 4 == image_upload.CHUNK_BYTES
    assert EncodedImage(image, SPACING, "zlib", chunk_bytes=1000).chunk_elements == 250


def test_an_oversize_volume_is_refused_before_any_work(tiny_model_dir, monkeypatch):
    limits = Limits(max_image_voxels=30 * 40 * 50 - 1)
    image = mr_like_image((30, 40, 50), seed=7)

    def no_work(*args, **kwargs):
        raise AssertionError("the image was hashed or compressed")

    with ThreadedServer(server_config(tiny_model_dir, limits=limits)) as server:
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
            monkeypatch.setattr(EncodedImage, "__init__", no_work)
            with pytest.raises(InvalidPromptError, match=r"50 x 40 x 30, float32\) is too large .* Crop or resample"):
                backend.set_image(image)
            assert backend.image_shape is None and backend.stats.image_uploads == 0
            monkeypatch.undo()
            backend.set_image(image[:, :, 1:])  # one voxel less along an axis fits
            assert backend.stats.image_uploads == 1 and backend.upload_progress() is None  # done: nothing to show


@pytest.mark.parametrize(("shape", "dtype", "limits", "words"), [
    ((10, 10, 5000), np.uint8, {"max_dim": 4096}, "5,000 voxels along one axis, at most 4,096"),
    ((100, 100, 100), np.uint8, {"max_image_voxels": 500_000}, "1 M voxels, at most 0.5"),
    ((100, 100, 100), np.float64, {"max_image_bytes": 2**20 * 7}, "7.629 MiB, at most 7"),
])
def test_each_limit_is_named(shape, dtype, limits, words):
    generous = {"max_dim": 5000, "max_image_voxels": 10**6, "max_image_bytes": 2**23}
    image = np.empty(shape, dtype)
    with pytest.raises(InvalidPromptError, match=words):
        check_image_fits(image, Limits(**{**generous, **limits}), "http://server")
    check_image_fits(image, Limits(**generous), "http://server")
