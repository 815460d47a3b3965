"""The disk cache trusts nothing it reads back: a readable file whose voxels are not its digest's is dropped."""

from __future__ import annotations

import numpy as np
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config
from synthetic import blob_centre, mr_like_image

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.interface import Point
from nninteractive_slicer.protocol.wire import image_digest
from nninteractive_slicer.server.image_crypto import Sealer
from nninteractive_slicer.server.image_disk import DiskCache
from nninteractive_slicer.server.images import CachedImage, ImageCache

SPACING = (1.0, 1.0, 1.0)


def swap_voxels(cache_dir, digest: str, other: np.ndarray) -> None:
    """Overwrite a cache file with a valid one of the same shape and dtype but other voxels."""
    disk = DiskCache(cache_dir, 10**9, Sealer(None))
    disk.save(digest, other, SPACING)
    assert disk.load(digest)[0].shape == other.shape  # readable: only the digest can tell


def stored(cache_dir, digest: str) -> np.ndarray:
    return DiskCache(cache_dir, 10**9, Sealer(None)).load(digest)[0]


def test_a_valid_file_with_other_voxels_under_a_digest_is_rejected_and_deleted(tmp_path):
    array = mr_like_image((16, 16, 16), seed=1)
    image = CachedImage(image_digest(array, SPACING), array, SPACING)
    ImageCache(10**9, tmp_path, disk_budget_bytes=10**9).put(image, "alice")
    swap_voxels(tmp_path, image.digest, mr_like_image((16, 16, 16), seed=2))
    fresh = ImageCache(10**9, tmp_path, disk_budget_bytes=10**9)  # as after a restart
    assert fresh.get(image.digest) is None
    assert list((tmp_path / "images").iterdir()) == []


def test_the_client_uploads_again_when_the_servers_copy_was_tampered_with(tmp_path, tiny_model_dir, image64):
    config = server_config(tiny_model_dir, cache_dir=tmp_path)
    with ThreadedServer(config) as server, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as first:
        first.set_image(image64)
        expected = first.prompt(Point(blob_centre(image64.shape)))
    [img] = (tmp_path / "images").glob("*.img")
    swap_voxels(tmp_path, img.stem, mr_like_image(image64.shape, seed=99))
    with ThreadedServer(config) as server, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
        backend.set_image(image64)
        result = backend.prompt(Point(blob_centre(image64.shape)))
        assert backend.stats.image_uploads == 1  # this client sent it: the server's copy was not used
    assert result.box == expected.box
    np.testing.assert_array_equal(result.patch, expected.patch)
    np.testing.assert_array_equal(stored(tmp_path, img.stem), image64)  # the cache holds the real image again
