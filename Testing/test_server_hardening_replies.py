"""A malformed reply from the server is a typed error that changes nothing: not the caller's mask, not the
client's record of the session, however the server got it wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_remote import ALICE_KEY, CLIENT_TIMEOUT_S, ThreadedServer, server_config
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from synthetic import prompt_script, scripted_mask

from nninteractive_slicer.backends.slicer_server import SlicerServerBackend
from nninteractive_slicer.errors import BackendError
from nninteractive_slicer.protocol.wire import encode_frame, pack_mask

SCRIPT = 7


@pytest.fixture(scope="module")
def uninterrupted(local_backend_factory, image64) -> np.ndarray:
    with local_backend_factory() as backend:
        return scripted_mask(backend, image64, SCRIPT)

class TamperedReplies:
    """Rewrites the next prompt reply with ``tamper(reply body) -> body``: a server gone wrong."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tamper = None
        self.path_part = "/prompts"  # the replies it rewrites: those to paths with this in them

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tamper = self.tamper
        if tamper is None or scope["type"] != "http" or self.path_part not in scope["path"]:
            await self.app(scope, receive, send)
            return
        self.tamper = None
        start: list[Message] = []

        async def rewrite(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.append(message)
                return
            body = tamper(message["body"]) if start[0]["status"] < 300 else message["body"]
            headers = [(k, v) for k, v in start[0]["headers"] if k != b"content-length"]
            await send({**start[0], "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({**message, "body": body})

        await self.app(scope, receive, rewrite)


def reframe(**changes):
    """A tamper function: the same reply with header fields changed (and a payload for a new box)."""

    def tamper(body: bytes) -> bytes:
        length = int.from_bytes(body[4:8], "big")
        header = {**json.loads(body[8 : 8 + length]), **changes}
        payload = body[8 + length :]
        if "box" in changes and all(isinstance(v, int) for r in changes["box"] for v in r):
            shape = [max(hi - lo, 1) for lo, hi in changes["box"]]
            payload = pack_mask(np.ones(shape, np.uint8), header["codec"])
        return encode_frame(header, payload)

    return tamper


MALFORMED = {
    "negative box": reframe(box=[[-2, 3], [10, 14], [10, 14]]),
    "box beyond the image": reframe(box=[[60, 70], [10, 14], [10, 14]]),
    "empty box": reframe(box=[[20, 20], [10, 14], [10, 14]]),
    "box of two axes": reframe(box=[[0, 4], [0, 4]]),
    "box of strings": reframe(box=[["0", "4"], [0, 4], [0, 4]]),
    "payload of another box": lambda body: body[:-3],
    "unknown codec": reframe(codec="brotli"),
    "codec not a string": reframe(codec=["zlib"]),
    "changed not a boolean": reframe(changed="yes"),
    "no revision": reframe(revision=None),
    "undo count not a number": reframe(undo="3"),
    "negative redo count": reframe(redo=-1),
    "garbage": lambda body: b"\x00garbage" * 10,
    "a JSON body": lambda body: b'{"changed": true}',
}


def test_a_malformed_reply_is_a_typed_error_that_changes_nothing(tiny_model_dir, image64, uninterrupted):
    """Issue 13.9: bad boxes were applied silently or raised ValueError; garbage raised a WireError."""
    server = ThreadedServer(server_config(tiny_model_dir))
    server.app.add_middleware(TamperedReplies)
    with server, SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
        mirror = np.zeros(image64.shape, np.uint8)
        backend.set_image(image64)
        tampering = server.app.middleware_stack  # built by the first request
        while not isinstance(tampering, TamperedReplies):
            tampering = tampering.app
        cases = iter(MALFORMED.items())
        for prompt in prompt_script(image64.shape, seed=7, count=SCRIPT):
            for _ in range(2):
                name, tamper = next(cases)
                tampering.tamper = tamper
                before = mirror.copy()
                with pytest.raises(BackendError) as raised:
                    result = backend.prompt(prompt)
                    result.apply_to(mirror)
                assert "reply" in str(raised.value), (name, raised.value)
                np.testing.assert_array_equal(mirror, before, err_msg=name)
            backend.prompt(prompt).apply_to(mirror)  # the same prompt again, now answered properly
            np.testing.assert_array_equal(backend.get_mask(), mirror)
        assert next(cases, None) is None
    np.testing.assert_array_equal(mirror, uninterrupted)


def test_malformed_json_replies_are_typed_errors(tiny_model_dir, image64):
    """Issue 13.9: garbage in any success reply is a BackendError, whatever the call."""
    server = ThreadedServer(server_config(tiny_model_dir))
    server.app.add_middleware(TamperedReplies)
    with server, SlicerServerBackend(server.url, ALICE_KEY, timeout=CLIENT_TIMEOUT_S) as backend:
        backend.check_connection()
        tampering = server.app.middleware_stack
        while not isinstance(tampering, TamperedReplies):
            tampering = tampering.app
        for path_part, call in (("/v1/images/", lambda: backend.set_image(image64)),
                                ("/v1/sessions", lambda: backend.set_image(image64)),
                                ("/v1/info", lambda: SlicerServerBackend(server.url, ALICE_KEY).check_connection())):
            tampering.path_part, tampering.tamper = path_part, lambda body: b'{"present": "yes", "revision": "1"}'
            with pytest.raises(BackendError, match="reply"):
                call()
        tampering.tamper = None
        backend.set_image(image64)  # and the backend still works
        assert backend.get_mask().shape == image64.shape
