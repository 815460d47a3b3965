"""Replicas that share one ``--cache-dir`` share who owns which image (issue 24 §2).

Each replica keeps its images, owners included, in memory. Two caches on one folder stand in for two
replicas (the deployment itself is in test_cluster.py): when alice uploads on one replica an image that
the other already holds for bob, and her session later moves there (her replica died), she binds it
without sending it again.
"""

from __future__ import annotations

import numpy as np

from nninteractive_slicer.protocol.wire import image_digest
from nninteractive_slicer.server.images import CachedImage, ImageCache

SPACING = (1.0, 1.0, 1.0)


def image() -> CachedImage:
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    return CachedImage(image_digest(array, SPACING), array, SPACING)


def replica(folder) -> ImageCache:
    return ImageCache(10**9, folder, disk_budget_bytes=10**9)


def test_an_owner_added_by_one_replica_reaches_another_that_holds_the_image(tmp_path):
    first, second = replica(tmp_path), replica(tmp_path)
    scan = image()
    first.put(scan, "bob")  # bob's replica holds it in memory
    assert second.get(scan.digest, "alice") is None  # not alice's (read from the shared folder)
    second.put(image(), "alice")  # so alice uploads it on her replica
    assert first.get(scan.digest, "alice") is not None, "alice would upload again on bob's replica"
    assert first.get(scan.digest, "carol") is None  # nobody else gains it


def test_replicas_adding_owners_keep_each_others(tmp_path):
    first, second = replica(tmp_path), replica(tmp_path)
    first.put(image(), "bob")
    second.put(image(), "alice")
    first.put(image(), "carol")  # first's memory knows bob and carol only
    fresh = replica(tmp_path)  # as a replacement replica, from the folder alone
    assert all(fresh.get(image().digest, user) is not None for user in ("alice", "bob", "carol"))
