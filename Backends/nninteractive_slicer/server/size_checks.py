"""Size limits enforced before allocation: request bodies (declared and streamed) and declared image geometry."""

from __future__ import annotations

import math
import re

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..interface import IMAGE_DTYPES
from ..protocol.contract import ErrorCode
from .config import Limits
from .errors import ApiError, send_json


def too_large(what: str, size: int, limit: int) -> ApiError:
    return ApiError(ErrorCode.TOO_LARGE,
                    f"The {what} ({size} bytes) is larger than this server accepts ({limit} bytes).")


# JSON bodies are small prompts and ids; parsed, a big one would cost many times its size in Python objects.
MAX_JSON_BYTES = 64 * 1024
# The routes that take binary frames (image chunks, masks, crops); every other body is small JSON (or none),
# whatever Content-Type the client declares.
FRAME_ROUTES = (("PUT", re.compile(r"/v1/images/[^/]+/chunks/[^/]+")),
                ("POST", re.compile(r"/v1/sessions/[^/]+/(mask|prompts/crop)")))


def body_limit(method: str, path: str, max_body_bytes: int) -> int:
    """The largest body the route takes: frames up to ``max_body_bytes``, anything else :data:`MAX_JSON_BYTES`."""
    frames = any(method == m and pattern.fullmatch(path) for m, pattern in FRAME_ROUTES)
    return max_body_bytes if frames else MAX_JSON_BYTES


class BodyLimitMiddleware:
    """Refuses a body whose Content-Length is over its route's limit unread, and stops a streamed one at the
    limit. Two Content-Type headers are refused: parsers disagree on which one counts."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if sum(name == b"content-type" for name, _ in scope["headers"]) > 1:
            await send_json(send, 400, {"error": ErrorCode.BAD_REQUEST.value,
                                        "detail": "The request has two Content-Type headers; send one."},
                            {"Connection": "close"})
            return
        headers = dict(scope["headers"])
        limit = body_limit(scope["method"], scope["path"], self.max_body_bytes)
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_json(send, 400, {"error": ErrorCode.BAD_REQUEST.value,
                                            "detail": "Content-Length is not a number."}, {"Connection": "close"})
                return
            if int(declared) > limit:
                error = too_large("request body", int(declared), limit)
                # Answered at once, the body unread: uvicorn discards what follows the answer, so the
                # connection carries the next request, unless the body is too big to be worth waiting for.
                keep = int(declared) <= self.max_body_bytes
                await send_json(send, 413, {"error": error.code, "detail": error.detail},
                                None if keep else {"Connection": "close"})
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large("request body", received, limit)
            return message

        await self.app(scope, limited_receive, send)


def check_prompt_size(box: tuple[tuple[int, int], ...], limits: Limits) -> None:
    """One lasso or scribble may cover at most ``max_prompt_voxels``: the device time of a prompt grows with it."""
    voxels = math.prod(hi - lo for lo, hi in box)
    if voxels > limits.max_prompt_voxels:
        raise ApiError(ErrorCode.INVALID_INPUT, f"This prompt's box covers {voxels} voxels; this server takes "
                                                     f"at most {limits.max_prompt_voxels} in one prompt. Draw it on "
                                                     "fewer slices, or split it.")


def check_image_geometry(shape: tuple[int, ...], dtype: str, limits: Limits) -> int:
    """Validate a declared image shape and dtype against the limits; returns its size in bytes."""
    if dtype not in IMAGE_DTYPES:
        raise ApiError(ErrorCode.INVALID_INPUT, f"Image type {dtype!r} is not supported; use one of "
                                             f"{', '.join(IMAGE_DTYPES)}.")
    if len(shape) != 3 or any(n < 1 for n in shape):
        raise ApiError(ErrorCode.INVALID_INPUT, f"The image shape {list(shape)} must be three positive sizes.")
    if max(shape) > limits.max_dim:
        raise ApiError(ErrorCode.TOO_LARGE,
                       f"The image shape {list(shape)} exceeds {limits.max_dim} voxels on an axis.")
    voxels = math.prod(shape)
    if voxels > limits.max_image_voxels:
        raise ApiError(ErrorCode.TOO_LARGE, f"The image has {voxels} voxels; this server accepts at most "
                                         f"{limits.max_image_voxels}.")
    nbytes = voxels * np.dtype(dtype).itemsize
    if nbytes > limits.max_image_bytes:
        raise too_large("image", nbytes, limits.max_image_bytes)
    return nbytes
