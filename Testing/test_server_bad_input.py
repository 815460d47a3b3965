"""Bad input gets a 4xx with a JSON reason, and the same keep-alive connection serves the next request."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import numpy as np
import pytest
import zstandard
from fixtures_remote import ALICE_KEY, BOB_KEY, CLIENT_TIMEOUT_S
from synthetic import blob_centre

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.protocol.contract import AFFINITY_HEADER
from nninteractive_slicer.protocol.wire import encode_frame, encode_image_chunk, image_digest, pack_mask

# On Ray Serve, the key keeps the raw requests on the replica of the sessions they name.
AFFINITY = "bad-input-corpus"
AUTH = {"Authorization": f"Bearer {ALICE_KEY}", AFFINITY_HEADER: AFFINITY}
JSON = {**AUTH, "Content-Type": "application/json"}
FRAME = {**AUTH, "Content-Type": "application/octet-stream"}
DIGEST = "ab" * 32


def chunk(shape, dtype="float32", payload=b"", **extra):
    header = {"shape": shape, "dtype": dtype, "spacing": [1, 1, 1], "codec": "none", "chunk_elements": 1024, **extra}
    return encode_frame(header, payload)


def corpus(session: str, empty_session: str, bob_session: str, shape) -> dict[str, tuple]:
    """name -> (method, path, headers, body, expected status)."""
    c = blob_centre(shape)
    valid_chunk = encode_image_chunk(np.arange(1024, dtype=np.float32), "zstd")
    zeros = np.zeros((4, 4, 4), np.float32)
    bomb = zstandard.ZstdCompressor().compress(b"\xff" * (64 << 20))  # 64 MiB of mask from 2 kB
    crop_box = [[c[0], c[0] + 1], [c[1] - 2, c[1] + 2], [c[2] - 2, c[2] + 2]]
    prompts = f"/v1/sessions/{session}/prompts"
    upload = f"/v1/images/{DIGEST}/chunks/0"
    return {
        "object dtype image (a 97-byte body)": ("PUT", upload, FRAME, chunk([4, 4, 4], "object"), 422),
        "header declaring 10^15 voxels": ("PUT", upload, FRAME, chunk([100000, 100000, 100000]), 413),
        "10^11 voxels within max_dim": ("PUT", upload, FRAME, chunk([4096, 4096, 4096]), 413),
        "negative dimension": ("PUT", upload, FRAME, chunk([-1, 64, 64]), 422),
        "two dimensions": ("PUT", upload, FRAME, chunk([64, 64]), 422),
        "truncated chunk payload": ("PUT", upload, FRAME, chunk([8, 8, 16], payload=valid_chunk[:-40]), 400),
        "truncated frame header": ("PUT", upload, FRAME, chunk([8, 8, 16])[:20], 400),
        "garbage body": ("PUT", upload, FRAME, bytes(range(256)) * 4, 400),
        "empty body": ("PUT", upload, FRAME, b"", 400),
        "unknown codec": ("PUT", upload, FRAME, chunk([8, 8, 16], codec="brotli"), 422),
        "chunk larger than allowed": ("PUT", upload, FRAME, chunk([64, 64, 64], chunk_elements=10**12), 413),
        "chunk index out of range": ("PUT", f"/v1/images/{DIGEST}/chunks/99", FRAME, chunk([8, 8, 16]), 422),
        "image not matching its digest": ("PUT", upload, FRAME, chunk([8, 8, 16], codec="zstd", payload=valid_chunk),
                                          422),
        "all-zero image": ("PUT", f"/v1/images/{image_digest(zeros, (1, 1, 1))}/chunks/0", FRAME,
                           chunk([4, 4, 4], payload=zeros.tobytes()), 422),
        "NaN spacing": ("PUT", upload, FRAME, chunk([8, 8, 16], spacing=[1, float("nan"), 1]), 422),
        "malformed digest": ("GET", "/v1/images/not-a-digest", AUTH, None, 422),
        "path traversal as digest": ("GET", "/v1/images/..%2F..%2Fetc%2Fpasswd", AUTH, None, 404),
        "NaN coordinates": ("POST", prompts, JSON, b'{"kind": "point", "coord": [NaN, 1, 1]}', 422),
        "string coordinates": ("POST", prompts, JSON, json.dumps({"kind": "point", "coord": ["10", 1, 1]}), 422),
        "fractional coordinates": ("POST", prompts, JSON, json.dumps({"kind": "point", "coord": [1.5, 1, 1]}), 422),
        "missing JSON key": ("POST", prompts, JSON, json.dumps({"kind": "point"}), 422),
        "unknown prompt kind": ("POST", prompts, JSON, json.dumps({"kind": "circle", "coord": [1, 1, 1]}), 422),
        "positive not a bool": ("POST", prompts, JSON, json.dumps({"kind": "point", "coord": list(c),
                                                                   "positive": "yes"}), 422),
        "body not JSON": ("POST", prompts, JSON, b"\x00\x01 not json", 400),
        "JSON array body": ("POST", prompts, JSON, b"[1, 2, 3]", 422),
        "JSON body of 1 MB": ("POST", prompts, JSON, b"[" + b"[1]," * 250_000 + b"1]", 413),
        "point outside the image": ("POST", prompts, JSON, json.dumps({"kind": "point", "coord": [64, 1, 1]}), 422),
        "huge coordinate": ("POST", prompts, JSON, json.dumps({"kind": "point", "coord": [10**30, 1, 1]}), 422),
        "box outside the image": ("POST", prompts, JSON, json.dumps({"kind": "bbox", "box": [[30, 31], [50, 70],
                                                                                             [10, 20]]}), 422),
        "3D box (unsupported)": ("POST", prompts, JSON, json.dumps({"kind": "bbox", "box": [[20, 30], [10, 20],
                                                                                            [10, 20]]}), 422),
        "revision not a number": ("POST", prompts, {**JSON, "X-Revision": "abc"},
                                  json.dumps({"kind": "point", "coord": list(c)}), 422),
        "crop decompression bomb": ("POST", f"{prompts}/crop", FRAME,
                                    encode_frame({"kind": "lasso", "box": crop_box, "codec": "zstd"}, bomb), 400),
        "crop outside the image": ("POST", f"{prompts}/crop", FRAME,
                                   encode_frame({"kind": "lasso", "box": [[0, 1], [60, 70], [0, 4]], "codec": "none"},
                                                b"\xff" * 5), 422),
        "empty crop": ("POST", f"{prompts}/crop", FRAME,
                       encode_frame({"kind": "scribble", "box": crop_box, "codec": "zstd"},
                                    pack_mask(np.zeros((1, 4, 4), np.uint8), "zstd")), 422),
        "starting mask of another shape": ("POST", f"/v1/sessions/{session}/mask", FRAME,
                                           encode_frame({"codec": "none", "shape": [8, 8, 8]}, b"\0" * 64), 422),
        "prompt before any image": ("POST", f"/v1/sessions/{empty_session}/prompts", JSON,
                                    json.dumps({"kind": "point", "coord": [1, 1, 1]}), 409),
        "undo before any image": ("POST", f"/v1/sessions/{empty_session}/undo", AUTH, None, 409),
        "redo before any image": ("POST", f"/v1/sessions/{empty_session}/redo", AUTH, None, 409),
        "undo of zero steps": ("POST", f"/v1/sessions/{session}/undo?steps=0", AUTH, None, 422),
        "undo of 'two' steps": ("POST", f"/v1/sessions/{session}/undo?steps=two", AUTH, None, 422),
        "undo of a huge number of steps": ("POST", f"/v1/sessions/{session}/undo?steps={10**30}", AUTH, None, 422),
        "undo beyond the history": ("POST", f"/v1/sessions/{session}/undo?steps=50", AUTH, None, 409),
        "redo with nothing undone": ("POST", f"/v1/sessions/{session}/redo", AUTH, None, 409),
        "image the server does not hold": ("POST", f"/v1/sessions/{session}/image", JSON,
                                           json.dumps({"digest": DIGEST}), 404),
        "unknown session": ("POST", "/v1/sessions/no-such-session/prompts", JSON,
                            json.dumps({"kind": "point", "coord": [1, 1, 1]}), 404),
        "another user's session": ("POST", f"/v1/sessions/{bob_session}/prompts", JSON,
                                   json.dumps({"kind": "point", "coord": list(c)}), 404),
        "closing another user's session": ("DELETE", f"/v1/sessions/{bob_session}", AUTH, None, 404),
        "reading another user's mask": ("GET", f"/v1/sessions/{bob_session}/mask", AUTH, None, 404),
        "wrong key": ("POST", prompts, {**JSON, "Authorization": "Bearer wrong"},
                      json.dumps({"kind": "point", "coord": list(c)}), 401),
        "no key": ("GET", "/v1/info", {}, None, 401),
        "wrong key on an upload (body unread)": ("PUT", upload, {**FRAME, "Authorization": "Bearer wrong"},
                                                 chunk([8, 8, 16], payload=b"x" * 300_000), 401),
        "another user's session, with a mask body": ("POST", f"/v1/sessions/{bob_session}/mask", FRAME,
                                                      encode_frame({"codec": "none", "shape": [64, 64, 64]},
                                                                   b"\0" * 32768), 404),
        "wrong key for the docs": ("GET", "/openapi.json", {"Authorization": "Bearer wrong"}, None, 401),
        "unknown route": ("GET", "/v1/nothing-here", AUTH, None, 404),
        "wrong method": ("PATCH", prompts, JSON, b"{}", 405),
    }


@pytest.fixture(params=["remote", "ray"])
def server_url(request: pytest.FixtureRequest) -> str:
    """One server, or the server on Ray Serve (two replicas behind Ray's proxy)."""
    return request.getfixturevalue({"remote": "remote_server", "ray": "ray_cluster"}[request.param]).url


@pytest.fixture
def sessions(server_url, image64):
    """Alice's session with an image, her session without one, and Bob's session with the same image."""
    alice, empty, bob = (SlicerServerBackend(server_url, key, timeout=CLIENT_TIMEOUT_S, affinity_key=AFFINITY)
                         for key in (ALICE_KEY, ALICE_KEY, BOB_KEY))
    alice.set_image(image64)
    bob.set_image(image64)
    empty.check_connection()
    empty._call(lambda: None)  # claims the session, sends nothing
    yield alice, empty, bob
    for backend in (alice, empty, bob):
        backend.close()


def test_bad_input_corpus_gets_4xx_on_one_healthy_connection(server_url, sessions, image64):
    alice, empty, bob = sessions
    mask_before = alice.get_mask()
    parts = urlsplit(server_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=CLIENT_TIMEOUT_S)
    conn.connect()
    sock = conn.sock
    seen = {}
    for name, (method, path, headers, body, expected) in corpus(
        alice._server_session_id, empty._server_session_id, bob._server_session_id, image64.shape
    ).items():
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        seen[name] = response.status
        # The status first, with the body as bytes: a wrong answer may well not be JSON (a mask, say).
        assert response.status == expected, f"{name}: {response.status} {raw[:200]!r}"
        reply = json.loads(raw)
        assert set(reply) == {"error", "detail"} and reply["detail"], name
        assert conn.sock is sock, f"{name}: the connection was not kept alive"
    # The server still serves, on the same connection, and nobody's state changed.
    conn.request("POST", f"/v1/sessions/{alice._server_session_id}/prompts", headers=JSON,
                 body=json.dumps({"kind": "point", "coord": list(blob_centre(image64.shape))}))
    response = conn.getresponse()
    response.read()
    assert response.status == 200 and conn.sock is sock
    conn.close()
    np.testing.assert_array_equal(bob.get_mask(), np.zeros(image64.shape, np.uint8))
    assert not np.array_equal(alice.get_mask(), mask_before)
    print("\n".join(f"{status}  {name}" for name, status in seen.items()))


def test_an_oversized_body_is_refused_unread(server_url):
    parts = urlsplit(server_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("PUT", f"/v1/images/{DIGEST}/chunks/0")
    conn.putheader("Authorization", f"Bearer {ALICE_KEY}")
    conn.putheader("Content-Length", str(10**12))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"] == "too_large"
    conn.close()
    # ... and the server answers the next client.
    assert SlicerServerBackend(server_url, ALICE_KEY).check_connection()
