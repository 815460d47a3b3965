"""Issue 23, 4: images are patient data. They stay only for the retention after their last use, a user can
delete theirs at once, ``--cache-dir`` is sealed with the operator's key, and an audit log says who did what.
The client never notices: an image the server let go is uploaded again."""

from __future__ import annotations

import base64
import gc
import json
import logging
import signal
import subprocess
import sys
import time
import weakref

import numpy as np
import pytest
import requests
from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config
from server_processes import ServerProcess, free_port
from synthetic import blob_centre, mr_like_image

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.interface import Point
from nninteractive_slicer.protocol.wire import image_digest
from nninteractive_slicer.server import image_crypto
from nninteractive_slicer.server import options as server_options
from nninteractive_slicer.server.audit import AuditLog
from nninteractive_slicer.server.image_crypto import Sealer, Unreadable, load_cache_key

ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}
KEY_A, KEY_B = bytes(range(32)), bytes(range(1, 33))


def image_files(cache_dir) -> list[str]:
    return sorted(p.name for p in (cache_dir / "images").glob("*.img"))


def markers(cache_dir) -> list[str]:
    return sorted(p.name for p in (cache_dir / "owners").glob("*/*"))


def audit_events(path) -> list[tuple[str, str, str]]:
    return [(e["event"], e["user"], e["digest"]) for e in map(json.loads, path.read_text().splitlines())]


def wait_until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def status(url: str, digest: str, auth=ALICE) -> bool:
    return requests.get(f"{url}/v1/images/{digest}", headers=auth, timeout=10).json()["present"]


def delete(url: str, digest: str, auth=ALICE) -> requests.Response:
    return requests.delete(f"{url}/v1/images/{digest}", headers=auth, timeout=CLIENT_TIMEOUT_S)


# -- retention ---------------------------------------------------------------------------------------------
def test_an_image_goes_from_memory_and_disk_after_the_retention_but_never_while_a_session_uses_it(
        tiny_model_dir, tmp_path):
    image = mr_like_image((16, 16, 16), seed=401)
    digest = image_digest(image, (1, 1, 1))
    cache_dir, audit = tmp_path / "cache", tmp_path / "audit.jsonl"
    config = server_config(tiny_model_dir, cache_dir=cache_dir, image_retention_s=1.0, audit_log=audit)
    with ThreadedServer(config) as server, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
        alice.set_image(image)
        time.sleep(2.5)  # past the retention, but the session uses the image
        assert status(server.url, digest) and image_files(cache_dir) == [f"{digest}.img"]
        alice.close()
        assert wait_until(lambda: not image_files(cache_dir) and not markers(cache_dir))
        assert len(server.runtime.cache) == 0 and server.runtime.cache.nbytes == 0
        assert not status(server.url, digest)
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as again:
            again.set_image(image)  # uploaded again, transparently
            assert again.stats.image_uploads == 1
            assert again.prompt(Point(blob_centre(image.shape))).changed
    assert audit_events(audit)[:3] == [("uploaded", "alice", digest), ("used", "alice", digest),
                                       ("expired", "alice", digest)]


# -- deletion ----------------------------------------------------------------------------------------------
def test_a_user_deletes_their_image_at_once_and_their_client_uploads_it_again(tiny_model_dir, tmp_path):
    image = mr_like_image((16, 16, 16), seed=402)
    digest = image_digest(image, (1, 1, 1))
    cache_dir, audit = tmp_path / "cache", tmp_path / "audit.jsonl"
    with ThreadedServer(server_config(tiny_model_dir, cache_dir=cache_dir, audit_log=audit)) as server, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
        alice.set_image(image)
        before = alice.prompt(Point(blob_centre(image.shape)))
        session = alice._server_session_id
        array = weakref.ref(server.runtime.cache.get(digest).array)
        assert delete(server.url, digest, BOB).status_code == 404  # not bob's: nothing happens
        reply = delete(server.url, digest)
        assert reply.status_code == 200 and reply.json() == {"digest": digest, "present": False}
        assert image_files(cache_dir) == [] and markers(cache_dir) == []  # unlinked
        assert len(server.runtime.cache) == 0 and server.runtime.cache.nbytes == 0
        assert requests.get(f"{server.url}/v1/sessions/{session}", headers=ALICE, timeout=10).status_code == 404
        assert wait_until(lambda: gc.collect() >= 0 and array() is None)  # the memory is released
        assert delete(server.url, digest).json()["error"] == "image_unknown"  # gone: a second delete says so
        # The client rebuilds its session and sends the image again; the user sees the same result.
        after = alice.prompt(Point(blob_centre(image.shape)))
        assert alice.stats.image_uploads == 2
        assert after.box == before.box
    assert [e for e, _, _ in audit_events(audit)] == ["uploaded", "used", "deleted", "uploaded", "used"]


def test_deleting_a_shared_image_leaves_the_other_uploaders_copy(tiny_model_dir, tmp_path):
    image = mr_like_image((16, 16, 16), seed=403)
    digest = image_digest(image, (1, 1, 1))
    cache_dir = tmp_path / "cache"
    with ThreadedServer(server_config(tiny_model_dir, cache_dir=cache_dir)) as server:
        for key in (ALICE_KEY, BOB_KEY):
            with SlicerServerBackend(server.url, key, timeout=CLIENT_TIMEOUT_S) as backend:
                backend.set_image(image)
                assert backend.stats.image_uploads == 1
        assert delete(server.url, digest).status_code == 200
        assert not status(server.url, digest) and status(server.url, digest, BOB)
        assert image_files(cache_dir) == [f"{digest}.img"] and len(markers(cache_dir)) == 1
        with SlicerServerBackend(server.url, BOB_KEY, timeout=CLIENT_TIMEOUT_S) as bob:
            bob.set_image(image)
            assert bob.stats.image_uploads == 0


CRASHING_SERVER = """
import os, signal, sys
from nninteractive_slicer.server import image_disk

def killed(self, digest):  # the hook: between the holder's marker and the image file
    os.kill(os.getpid(), signal.SIGKILL)

image_disk.DiskCache.drop = killed
from nninteractive_slicer.server.cli import main
main(sys.argv[1:])
"""


def test_a_server_killed_in_the_middle_of_a_deletion_serves_nothing_half_deleted(tiny_model_dir, tmp_path):
    image = mr_like_image((16, 16, 16), seed=404)
    digest = image_digest(image, (1, 1, 1))
    cache_dir, port = tmp_path / "cache", free_port()
    options = ["--model-dir", str(tiny_model_dir), "--device", "cpu", "--torch-threads", "2", "--port", str(port),
               "--api-key", f"alice:{ALICE_KEY}", "--log-format", "text", "--cache-dir", str(cache_dir)]
    crashing = ServerProcess([sys.executable, "-c", CRASHING_SERVER, *options], port, ALICE_KEY)
    with crashing:
        with SlicerServerBackend(crashing.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
            alice.set_image(image)
        with pytest.raises(requests.ConnectionError):
            delete(crashing.url, digest)
        assert crashing._process is not None and crashing._process.wait(30) == -signal.SIGKILL
    assert markers(cache_dir) == [] and image_files(cache_dir) == [f"{digest}.img"]  # half-deleted
    with ServerProcess([sys.executable, "-m", "nninteractive_slicer.server.cli", *options], port, ALICE_KEY) as server:
        assert image_files(cache_dir) == []  # removed at start
        assert "1 images of interrupted removals" in server.log_text()
        assert not status(server.url, digest)
        assert delete(server.url, digest).status_code == 404
        session = requests.post(f"{server.url}/v1/sessions", headers=ALICE, timeout=10).json()["session_id"]
        bind = requests.post(f"{server.url}/v1/sessions/{session}/image", json={"digest": digest}, headers=ALICE,
                             timeout=CLIENT_TIMEOUT_S)
        assert bind.status_code == 404 and bind.json()["error"] == "image_unknown"
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
            alice.set_image(image)
            assert alice.stats.image_uploads == 1
            assert alice.prompt(Point(blob_centre(image.shape))).changed


def test_a_deletion_the_disk_refuses_half_way_is_a_503_and_the_retention_finishes_it(tiny_model_dir, tmp_path,
                                                                                     monkeypatch):
    from nninteractive_slicer.server import image_disk

    image = mr_like_image((16, 16, 16), seed=405)
    digest = image_digest(image, (1, 1, 1))
    cache_dir = tmp_path / "cache"
    with ThreadedServer(server_config(tiny_model_dir, cache_dir=cache_dir)) as server:
        with SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
            alice.set_image(image)
        drop = image_disk.DiskCache.drop

        def refused(self, digest: str) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(image_disk.DiskCache, "drop", refused)
        reply = delete(server.url, digest)
        assert reply.status_code == 503 and reply.json()["error"] == "busy"
        assert not status(server.url, digest)  # never served again
        monkeypatch.setattr(image_disk.DiskCache, "drop", drop)
        server.runtime.cache.expire()
        assert image_files(cache_dir) == []


# -- encryption at rest ------------------------------------------------------------------------------------
@pytest.mark.parametrize("first, then", [(KEY_A, KEY_B), (None, KEY_A), (KEY_A, None)],
                         ids=["wrong key", "no key, then a key", "a key, then none"])
def test_a_cache_written_under_another_key_or_mode_means_an_upload_never_a_500(tiny_model_dir, tmp_path, caplog,
                                                                              first, then):
    image = mr_like_image((16, 16, 16), seed=406)
    digest = image_digest(image, (1, 1, 1))
    cache_dir = tmp_path / "cache"
    with ThreadedServer(server_config(tiny_model_dir, cache_dir=cache_dir, cache_key=first)) as server, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
        alice.set_image(image)
        expected = alice.prompt(Point(blob_centre(image.shape)))
    [stored] = (cache_dir / "images").glob("*.img")
    voxels = image.tobytes()
    sealed = voxels[4096:4160] not in stored.read_bytes()
    assert sealed == (first is not None)
    named = {p.name.removesuffix(".img") for p in cache_dir.rglob("*") if p.is_file()}
    assert (digest in named) == (first is None)  # with a key, not even the names tell which scans are here
    caplog.set_level(logging.WARNING, "nninteractive_slicer.server")
    with ThreadedServer(server_config(tiny_model_dir, cache_dir=cache_dir, cache_key=then)) as server, \
            SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as alice:
        alice.set_image(image)
        assert alice.stats.image_uploads == 1
        result = alice.prompt(Point(blob_centre(image.shape)))
    assert result.box == expected.box
    np.testing.assert_array_equal(result.patch, expected.patch)
    assert "1 unreadable markers (another key, or none) and 1 images" in caplog.text  # removed at start
    assert len(list((cache_dir / "images").glob("*.img"))) == 1  # only the new upload
    for key in (KEY_A, KEY_B):
        assert key.hex() not in caplog.text


def test_a_sealed_file_cannot_be_cut_reordered_or_moved(tmp_path, monkeypatch):
    monkeypatch.setattr(image_crypto, "SEGMENT", 1000)
    payload = np.random.default_rng(7).bytes(3500)
    sealer = Sealer(KEY_A)
    path = tmp_path / "f"
    with open(path, "wb") as f:
        sealer.write(f, "one", [payload[:10], payload[10:]])
    data = path.read_bytes()
    assert len(data) == image_crypto.HEADER + len(payload) + 4 * image_crypto.TAG  # four segments

    def read(blob: bytes, name: str = "one") -> bytes:
        path.write_bytes(blob)
        with open(path, "rb") as f:
            return bytes(sealer.read(f, name, len(blob)))

    assert read(data) == payload
    segment, head = 1000 + image_crypto.TAG, image_crypto.HEADER
    first, second = data[head:head + segment], data[head + segment:head + 2 * segment]
    swapped = data[:head] + second + first + data[head + 2 * segment:]
    for damaged, name in [(data[:-image_crypto.TAG - 500], "one"), (data[:head + 3 * segment], "one"),
                          (swapped, "one"), (data, "two"), (data[:-1] + bytes([data[-1] ^ 1]), "one")]:
        with pytest.raises(Unreadable):
            read(damaged, name)
    with pytest.raises(Unreadable, match="another key"):
        with open(path, "rb") as f:
            path.write_bytes(data)
            Sealer(KEY_B).read(f, "one", len(data))


def test_the_key_comes_from_a_file_or_the_environment_and_is_never_shown(tmp_path, capsys):
    key_file = tmp_path / "key"
    key_file.write_text(KEY_A.hex() + "\n")
    assert load_cache_key(key_file, {}) == KEY_A
    assert load_cache_key(None, {image_crypto.KEY_ENV: KEY_B.hex()}) == KEY_B
    assert load_cache_key(None, {image_crypto.KEY_ENV: base64.b64encode(KEY_B).decode()}) == KEY_B
    assert load_cache_key(None, {image_crypto.KEY_ENV: base64.urlsafe_b64encode(KEY_B).decode()}) == KEY_B
    assert load_cache_key(None, {}) is None
    args = ["--model-dir", "m", "--cache-dir", str(tmp_path / "c"), "--cache-key-file", str(key_file)]
    config = server_options.config_from_args(server_options.build_parser().parse_args(args))
    assert config.cache_key == KEY_A and KEY_A.hex() not in repr(config)
    short = "0123456789abcdef" * 2
    key_file.write_text(short)
    with pytest.raises(SystemExit) as refused:
        server_options.config_from_args(server_options.build_parser().parse_args(args))
    assert "64 hex digits" in str(refused.value) and short not in str(refused.value)
    key_file.write_text(KEY_A.hex())
    with pytest.raises(SystemExit, match="give --cache-dir"):
        server_options.config_from_args(server_options.build_parser().parse_args(args[:2] + args[4:]))


# -- the audit log -----------------------------------------------------------------------------------------
def test_the_audit_log_says_who_did_what_with_which_image_and_nothing_more(tiny_model_dir, tmp_path):
    image = mr_like_image((16, 16, 16), seed=407)
    digest = image_digest(image, (1, 1, 1))
    audit = tmp_path / "audit.jsonl"
    config = server_config(tiny_model_dir, cache_dir=tmp_path / "cache", cache_key=KEY_A, audit_log=audit)
    with ThreadedServer(config) as server:
        for key in (ALICE_KEY, BOB_KEY):
            with SlicerServerBackend(server.url, key, timeout=CLIENT_TIMEOUT_S) as backend:
                backend.set_image(image)
        delete(server.url, digest, BOB)
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["event"], e["user"], e["digest"]) for e in entries] == [
        ("uploaded", "alice", digest), ("used", "alice", digest), ("uploaded", "bob", digest),
        ("used", "bob", digest), ("deleted", "bob", digest)]
    assert all(set(e) <= {"time", "event", "user", "digest", "session"} for e in entries)
    text = audit.read_text()
    for secret in (ALICE_KEY, BOB_KEY, KEY_A.hex()):
        assert secret not in text
    assert len(text) < 2000  # no voxels


def test_the_audit_log_is_rotated_by_size(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=1000, backups=2)
    for i in range(60):
        log.record("used", f"user{i}", f"{i:064x}")
    files = sorted(p.name for p in tmp_path.glob("audit.jsonl*") if p.suffix != ".lock")
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    lines = [json.loads(line) for name in reversed(files) for line in (tmp_path / name).read_text().splitlines()]
    assert all((tmp_path / name).stat().st_size <= 1000 for name in files)
    assert [e["user"] for e in lines] == [f"user{i}" for i in range(60 - len(lines), 60)]  # the newest, in order


WRITER = """
import sys
from pathlib import Path
from nninteractive_slicer.server.audit import AuditLog
log = AuditLog(Path(sys.argv[1]), max_bytes=2000, backups=100)
for i in range(150):
    log.record("used", sys.argv[2], f"{i:064x}")
"""


def test_servers_on_one_machine_share_one_audit_log_without_losing_a_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name]) for name in ("r1", "r2", "r3")]
    assert [w.wait(60) for w in writers] == [0, 0, 0]
    lines = [json.loads(line) for p in tmp_path.glob("audit.jsonl*") if p.suffix != ".lock"
             for line in p.read_text().splitlines()]
    for name in ("r1", "r2", "r3"):
        assert sorted(int(e["digest"], 16) for e in lines if e["user"] == name) == list(range(150))
