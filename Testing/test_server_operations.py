"""What an operator sees: /info, /metrics, logs that name the user, and the image cache's budgets."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import numpy as np
import requests
from fixtures_remote import BOB_KEY, CLIENT_TIMEOUT_S, hold_device
from synthetic import blob_centre, mr_like_image

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.interface import Point
from nninteractive_slicer.protocol.contract import PROTOCOL_VERSION
from nninteractive_slicer.protocol.wire import encode_frame, encode_image_chunk, image_digest
from nninteractive_slicer.server.image_disk import user_tag
from nninteractive_slicer.server.images import CachedImage, ImageCache
from nninteractive_slicer.server.logs import JsonFormatter

BOB = {"Authorization": f"Bearer {BOB_KEY}"}


def test_info_metrics_and_logs(remote_server, image64, caplog):
    info = requests.get(f"{remote_server.url}/v1/info", headers=BOB, timeout=10).json()
    assert info["protocol_version"] == PROTOCOL_VERSION
    assert info["model_id"] == "tiny" and info["license"].startswith("Apache-2.0") and info["device"] == "cpu"
    assert set(info["capabilities"]["prompt_kinds"]) == {"point", "bbox", "scribble", "lasso"}
    assert {"torch", "nninteractive", "nninteractive_slicer", "python"} <= set(info["versions"])
    assert info["limits"]["max_body_bytes"] > info["limits"]["chunk_bytes"]
    assert "zstd" in info["codecs"] and info["auth"] is True

    caplog.set_level(logging.INFO, logger="nninteractive_slicer.server")
    with SlicerServerBackend(remote_server.url, BOB_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
        backend.set_image(image64)
        backend.prompt(Point(blob_centre(image64.shape)))
        metrics = requests.get(f"{remote_server.url}/metrics", headers=BOB, timeout=10).text
    for line in ('nninteractive_requests_total{method="POST",route="/v1/sessions/{session_id}/prompts",status="200"}',
                 'nninteractive_prediction_seconds_count{kind="point"}', "nninteractive_sessions ",
                 "nninteractive_image_cache_bytes ", "nninteractive_device_queue_length "):
        assert line in metrics, line
    assert float(metrics.split("\nnninteractive_image_cache_bytes ")[1].split()[0]) >= image64.nbytes

    prompts = [r for r in caplog.records if getattr(r, "route", "").endswith("/prompts")]
    assert prompts and all(r.user == "bob" for r in prompts)
    line = json.loads(JsonFormatter().format(prompts[0]))
    assert line["user"] == "bob" and line["status"] == 200 and line["event"] == "request"


def image(seed: int) -> CachedImage:
    array = mr_like_image((16, 16, 16), seed=seed)  # 16 kB
    return CachedImage(image_digest(array, (1, 1, 1)), array, (1.0, 1.0, 1.0))


def test_the_memory_cache_evicts_the_least_recently_used():
    a, b, c = image(1), image(2), image(3)
    cache = ImageCache(budget_bytes=2 * a.array.nbytes)
    cache.put(a, "alice")
    cache.put(b, "alice")
    assert cache.get(a.digest, "alice") is a  # a is now the most recent
    cache.put(c, "alice")
    assert cache.status(a.digest, "alice") and cache.status(c.digest, "alice")
    assert not cache.status(b.digest, "alice")
    assert cache.nbytes == 2 * a.array.nbytes


def test_the_disk_cache_survives_a_new_process_and_drops_damaged_files(tmp_path):
    a, b = image(1), image(2)
    ImageCache(10**9, tmp_path, disk_budget_bytes=10**9).put(a, "alice")
    ImageCache(10**9, tmp_path, disk_budget_bytes=10**9).put(b, "alice")
    fresh = ImageCache(10**9, tmp_path, disk_budget_bytes=10**9)  # as after a restart
    np.testing.assert_array_equal(fresh.get(a.digest, "alice").array, a.array)
    (tmp_path / "images" / f"{b.digest}.img").write_bytes(b"damaged")
    assert fresh.get(b.digest, "alice") is None and not (tmp_path / "images" / f"{b.digest}.img").exists()
    small = ImageCache(10**9, tmp_path / "small", disk_budget_bytes=a.array.nbytes + 1000)
    small.put(a, "alice")
    os.utime(tmp_path / "small" / "owners" / user_tag("alice") / a.digest, (1, 1))  # last used long ago
    small.put(b, "alice")  # over the disk budget: the older image goes
    assert [p.stem for p in (tmp_path / "small" / "images").glob("*.img")] == [b.digest]


def test_uploads_and_light_calls_do_not_wait_for_the_device(remote_server):
    """While the device thread is busy (another user's prediction), images still arrive and get decoded."""
    image = mr_like_image((32, 40, 48), seed=56)
    digest = image_digest(image, (1, 1, 1))
    header = {"shape": list(image.shape), "dtype": "float32", "spacing": [1, 1, 1], "codec": "zstd",
              "chunk_elements": image.size}
    body = encode_frame(header, encode_image_chunk(image.reshape(-1), "zstd"))
    release = threading.Event()
    held = hold_device(remote_server, release)
    try:
        started = time.perf_counter()
        upload = requests.put(f"{remote_server.url}/v1/images/{digest}/chunks/0", data=body, timeout=10,
                              headers={**BOB, "Content-Type": "application/octet-stream"}).json()
        metrics = requests.get(f"{remote_server.url}/metrics", headers=BOB, timeout=10).text
        elapsed = time.perf_counter() - started
        assert upload["complete"] and remote_server.runtime.worker.queue_length == held  # the device still held
        assert f"nninteractive_device_queue_length {held:.1f}" in metrics
        assert elapsed < 2.5
    finally:
        release.set()
