"""Images under attack and faults: a verified image never changes, images are private unless shared, and a
damaged or half-written disk cache heals itself instead of failing requests."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config
from synthetic import blob_centre, mr_like_image

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.interface import Point
from nninteractive_slicer.protocol.wire import encode_frame, encode_image_chunk, image_digest
from nninteractive_slicer.server import image_disk, images, uploads
from nninteractive_slicer.server.image_crypto import Sealer

ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}
FRAME = {"Content-Type": "application/octet-stream"}


def chunk_body(image: np.ndarray, start: int, stop: int, chunk_elements: int, codec: str = "none",
               values: np.ndarray | None = None) -> bytes:
    header = {"shape": list(image.shape), "dtype": image.dtype.name, "spacing": [1, 1, 1], "codec": codec,
              "chunk_elements": chunk_elements}
    flat = image.reshape(-1)[start:stop] if values is None else values
    return encode_frame(header, encode_image_chunk(flat, codec))


def put_chunk(url: str, digest: str, index: int, body: bytes, auth: dict[str, str] = ALICE) -> requests.Response:
    return requests.put(f"{url}/v1/images/{digest}/chunks/{index}", data=body, headers={**auth, **FRAME},
                        timeout=CLIENT_TIMEOUT_S)


def bind(url: str, auth: dict[str, str], digest: str) -> requests.Response:
    session = requests.post(f"{url}/v1/sessions", headers=auth, timeout=10).json()["session_id"]
    try:
        return requests.post(f"{url}/v1/sessions/{session}/image", json={"digest": digest}, headers=auth,
                             timeout=CLIENT_TIMEOUT_S)
    finally:
        requests.delete(f"{url}/v1/sessions/{session}", headers=auth, timeout=10)


def test_a_chunk_racing_the_completion_cannot_change_the_verified_image(remote_server, monkeypatch):
    """Issue 13.1: a duplicate chunk decoded slowly while the last chunk completes the upload."""
    image = mr_like_image((16, 16, 16), seed=131)
    digest, half = image_digest(image, (1, 1, 1)), image.size // 2
    url = remote_server.url
    assert not put_chunk(url, digest, 0, chunk_body(image, 0, half, half)).json()["complete"]

    # The test hook: decoding a zlib chunk waits until the test lets it go on.
    decoding, go_on = threading.Event(), threading.Event()
    decode = uploads.decode_image_chunk

    def paused_decode(payload: bytes, count: int, dtype: str, codec: str) -> np.ndarray:
        values = decode(payload, count, dtype, codec)
        if codec == "zlib":
            decoding.set()
            go_on.wait(60)
        return values

    monkeypatch.setattr(uploads, "decode_image_chunk", paused_decode)
    poison = image.reshape(-1)[:half] + 1000.0
    with ThreadPoolExecutor(1) as pool:
        duplicate = pool.submit(put_chunk, url, digest, 0, chunk_body(image, 0, half, half, "zlib", poison))
        assert decoding.wait(60)
        last = put_chunk(url, digest, 1, chunk_body(image, half, image.size, half))
        assert last.status_code == 200 and last.json()["complete"]
        go_on.set()
        late = duplicate.result()
    assert late.status_code == 422, late.text  # refused: it does not match the image
    np.testing.assert_array_equal(remote_server.runtime.cache.get(digest).array, image)
    # A client binding the image uses the verified voxels: its prediction matches the local backend's.
    with SlicerServerBackend(url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
        backend.set_image(image)
        assert backend.stats.image_uploads == 0
        backend.prompt(Point(blob_centre(image.shape)))
        np.testing.assert_array_equal(remote_server.runtime.cache.get(digest).array, image)


def test_images_are_private_to_their_uploader_unless_the_server_shares_them(tiny_model_dir):
    """Issue 13.6: another key holder cannot learn of, nor bind, an image without uploading its voxels."""
    image = mr_like_image((16, 16, 24), seed=136)
    digest = image_digest(image, (1, 1, 1))
    garbage = chunk_body(image, 0, image.size, image.size, values=np.full(image.size, 7.0, np.float32))
    with ThreadedServer(server_config(tiny_model_dir)) as server:
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
            alice.set_image(image)
        status = requests.get(f"{server.url}/v1/images/{digest}", headers=BOB, timeout=10).json()
        assert status["present"] is False
        assert bind(server.url, BOB, digest).json()["error"] == "image_unknown"
        # A chunk sent to a complete image is read and checked, never accepted unread.
        refused = put_chunk(server.url, digest, 0, garbage)
        assert refused.status_code == 422 and refused.json()["error"] == "digest_mismatch"
        assert put_chunk(server.url, digest, 0, chunk_body(image, 0, image.size, image.size)).json()["complete"]
        with SlicerServerBackend(server.url, BOB_KEY, timeout=CLIENT_TIMEOUT_S) as bob:
            bob.set_image(image)
            assert bob.stats.image_uploads == 1  # Bob proved he has the voxels by sending them
        assert len(server.runtime.cache) == 1  # held once for both
    with ThreadedServer(server_config(tiny_model_dir, share_images=True)) as server:
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
            alice.set_image(image)
        assert requests.get(f"{server.url}/v1/images/{digest}", headers=BOB, timeout=10).json()["present"]
        assert put_chunk(server.url, digest, 0, garbage, BOB).status_code == 422
        with SlicerServerBackend(server.url, BOB_KEY, timeout=CLIENT_TIMEOUT_S) as bob:
            bob.set_image(image)
            assert bob.stats.image_uploads == 0


def write_corrupt_entry(cache_dir, digest: str) -> None:
    """An image file whose header declares a 99999^3 image, held by alice."""
    disk = image_disk.DiskCache(cache_dir, 10**9, Sealer(None))
    disk.hold("alice", digest)
    meta = json.dumps({"shape": [99999] * 3, "dtype": "float32", "spacing": [1, 1, 1]}).encode()
    with open(disk.images / f"{digest}.img", "wb") as f:
        Sealer(None).write(f, digest, [len(meta).to_bytes(4, "big"), meta, b"\0" * 4096])


def test_a_corrupt_disk_cache_entry_is_dropped_and_uploaded_again(tiny_model_dir, tmp_path, caplog):
    """Issue 13.7: a damaged .npy header made every bind of its digest a 500, forever."""
    image = mr_like_image((16, 16, 16), seed=137)
    digest = image_digest(image, (1, 1, 1))
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    write_corrupt_entry(cache_dir, digest)
    caplog.set_level(logging.WARNING, "nninteractive_slicer.server")
    with ThreadedServer(server_config(tiny_model_dir, cache_dir=cache_dir)) as server:
        refused = bind(server.url, ALICE, digest)
        assert refused.status_code == 404 and refused.json()["error"] == "image_unknown", refused.text
        assert "unreadable disk-cache entry" in caplog.text
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
            alice.set_image(image)
            assert alice.stats.image_uploads == 1
            assert alice.prompt(Point(blob_centre(image.shape))).changed
        stored, _ = image_disk.DiskCache(cache_dir, 10**9, Sealer(None)).load(digest)
        np.testing.assert_array_equal(stored, image)  # replaced by the upload


def dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def cache_files(cache_dir) -> list[str]:
    return sorted(str(p.relative_to(cache_dir)) for p in cache_dir.rglob("*") if p.is_file())


def test_leftovers_in_the_disk_cache_are_cleaned_at_start_and_counted(tiny_model_dir, tmp_path, caplog):
    """Issue 13.10: a kill -9 during a save leaves *.tmp files and markers without images that nothing cleaned;
    an interrupted removal leaves an image nobody holds; an older server left files of its own format."""
    cache_dir = tmp_path / "cache"
    kept = mr_like_image((16, 16, 16), seed=1310)
    image = images.CachedImage(image_digest(kept, (1, 1, 1)), kept, (1.0, 1.0, 1.0))
    images.ImageCache(10**9, cache_dir, 10**9).put(image, "alice")
    valid = cache_files(cache_dir)
    disk = image_disk.DiskCache(cache_dir, 10**9, Sealer(None))
    leftover_tmp = disk.images / f"{'ab' * 32}.img.{dead_pid()}.140000.tmp"  # a save killed half-way
    leftover_tmp.write_bytes(b"\0" * 100_000)
    disk.hold("bob", "cd" * 32)  # its image never appeared
    os.utime(disk.owners / image_disk.user_tag("bob") / ("cd" * 32), (1, 1))
    disk.save("ef" * 32, kept, (1.0, 1.0, 1.0))  # its holder's marker was removed, then the server was killed
    (cache_dir / f"{'ab' * 32}.npy").write_bytes(b"\0" * 128)  # the old format
    caplog.set_level(logging.INFO, "nninteractive_slicer.server")
    with ThreadedServer(server_config(tiny_model_dir, cache_dir=cache_dir)) as server:
        assert cache_files(cache_dir) == valid
        assert "removed 3 leftover files" in caplog.text and "and 1 images of interrupted removals" in caplog.text
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
            alice.set_image(kept)  # the valid entry is still served
            assert alice.stats.image_uploads == 0


@pytest.mark.parametrize("share", [False, True], ids=["private", "shared"])
def test_a_complete_image_checks_every_chunk_sent_to_it(tiny_model_dir, share):
    """Issue 13.6: the right voxels are accepted, any other are refused, for the image's own uploader too."""
    image = mr_like_image((8, 16, 16), seed=1361)
    digest, half = image_digest(image, (1, 1, 1)), image.size // 2
    with ThreadedServer(server_config(tiny_model_dir, share_images=share)) as server:
        for index, (start, stop) in enumerate([(0, half), (half, image.size)]):
            put_chunk(server.url, digest, index, chunk_body(image, start, stop, half))
        assert put_chunk(server.url, digest, 1, chunk_body(image, half, image.size, half)).json()["complete"]
        wrong = chunk_body(image, half, image.size, half, values=image.reshape(-1)[half:] + 1)
        assert put_chunk(server.url, digest, 1, wrong).status_code == 422
        other_split = chunk_body(image, 0, image.size, image.size)  # the same voxels in one chunk
        assert put_chunk(server.url, digest, 0, other_split).json()["complete"]


def traced(call) -> list[str]:
    """Every Python function and builtin that ``call()`` runs in this thread, in order."""
    steps: list[str] = []

    def profile(frame, event, arg) -> None:
        if event == "call":
            steps.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
        elif event == "c_call":
            steps.append(f"builtin:{getattr(arg, '__qualname__', repr(arg))}")

    sys.setprofile(profile)
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the 404 is part of the path
        steps.append(f"raised:{type(exc).__name__}:{getattr(exc, 'status_code', '')}")
    finally:
        sys.setprofile(None)
    return steps


def run_inline(coroutine) -> object:
    """Run a route handler whose awaits never suspend (the thread pool replaced by a direct call)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the handler suspended")


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_whether_another_user_uploaded_an_image_takes_the_same_path_as_an_unknown_image(
        tiny_model_dir, tmp_path, monkeypatch, where):
    """Issue 23, 1.4: for a digest alice uploaded, bob's GET /v1/images/{digest} and POST .../image answered in
    ~10 ms against ~3 ms for an unknown one. Now both run the very same steps: alice's entry is never consulted.
    (Bob's own image takes another path: the trace sees a difference where there is one.)"""
    from nninteractive_slicer.server.routes import images as image_routes
    from nninteractive_slicer.server.routes import session_calls
    from nninteractive_slicer.server.runtime import ServerRuntime
    from nninteractive_slicer.server.schemas import SetImageBody

    async def inline(fn, *args, **kwargs):
        return fn(*args, **kwargs)

    monkeypatch.setattr(image_routes, "run_in_threadpool", inline)
    monkeypatch.setattr(session_calls, "run_in_threadpool", inline)
    cache_dir = tmp_path / "cache" if where == "disk" else None
    core = ServerRuntime(server_config(tiny_model_dir, cache_dir=cache_dir))
    try:
        alices, bobs, unknown = (mr_like_image((8, 8, 8), seed=140 + i) for i in range(3))
        digests = {}
        for name, owner, array in (("alice's", "alice", alices), ("bob's", "bob", bobs), ("unknown", None, unknown)):
            digests[name] = image_digest(array, (1, 1, 1))
            if owner is not None:
                core.cache.put(images.CachedImage(digests[name], array, (1.0, 1.0, 1.0)), owner)
        if where == "disk":  # as after a restart: the images are on disk only
            core.cache = images.ImageCache(10**9, cache_dir, 10**9)
        session = asyncio.run(core.create_session("bob"))

        def status(digest: str) -> list[str]:
            return traced(lambda: run_inline(image_routes.image_status(digest, core, "bob")))

        def bind(digest: str) -> list[str]:
            return traced(lambda: run_inline(session_calls.set_image(session.id, SetImageBody(digest=digest), core,
                                                                     "bob", None)))

        for path in (status, bind):
            for _ in range(2):  # the first look-up may load an entry; the path must not depend on it either
                assert path(digests["alice's"]) == path(digests["unknown"]), path.__name__
        assert traced(lambda: core.cache.get(digests["bob's"], "bob")) != \
            traced(lambda: core.cache.get(digests["unknown"], "bob"))
    finally:
        core.shutdown()


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_one_users_uploads_do_not_flush_another_users_latest_image(tmp_path, where):
    """Issue 23, 1.5: the budgets were one LRU for all users: after alice uploaded 8 more images, bob's latest
    image was gone. Now the user who holds the most bytes gives way first."""
    arrays = [mr_like_image((16, 16, 16), seed=150 + i) for i in range(9)]
    cached = [images.CachedImage(image_digest(a, (1, 1, 1)), a, (1.0, 1.0, 1.0)) for a in arrays]
    room = 4 * (arrays[0].nbytes + 1024)  # four images, with room for file headers
    cache = images.ImageCache(room, None) if where == "memory" else images.ImageCache(10**9, tmp_path, room)
    cache.put(cached[0], "bob")
    for image in cached[1:]:
        cache.put(image, "alice")
    if where == "disk":
        cache = images.ImageCache(10**9, tmp_path, 10**9)  # as after a restart: what the disk kept
    assert cache.get(cached[0].digest, "bob") is not None
    kept = [image for image in cached[1:] if cache.get(image.digest, "alice") is not None]
    assert kept[-1] is cached[-1] or kept[-1].digest == cached[-1].digest  # alice's newest stay
    assert 2 <= len(kept) <= 3
