"""Size limits enforced before allocation: request bodies (declared and streamed) and declared image geometry."""

from __future__ import annotations

import math

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.protocol import ErrorCode
from ..interface import IMAGE_DTYPES
from .config import Limits
from .errors import ApiError, send_json


def too_large(what: str, size: int, limit: int) -> ApiError:
    return ApiError(413, ErrorCode.TOO_LARGE,
                    f"The {what} ({size} bytes) is larger than this server accepts ({limit} bytes).")


# JSON bodies are small prompts and ids; parsed, a big one would cost many times its size in Python objects.
MAX_JSON_BYTES = 64 * 1024


class BodyLimitMiddleware:
    """Refuses a body whose Content-Length is over the limit unread, and stops a streamed one at the limit."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        is_json = headers.get(b"content-type", b"").lower().startswith(b"application/json")
        limit = MAX_JSON_BYTES if is_json else self.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_json(send, 400, {"error": ErrorCode.BAD_REQUEST.value,
                                            "detail": "Content-Length is not a number."}, {"Connection": "close"})
                return
            if int(declared) > limit:
                error = too_large("request body", int(declared), limit)
                # A body we would have read anyway is drained, keeping the connection; a bigger one stays
                # unread, and then the connection cannot carry another request.
                keep = int(declared) <= self.max_body_bytes
                if keep:
                    while (await receive()).get("more_body", False):
                        pass
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


def check_image_geometry(shape: tuple[int, ...], dtype: str, limits: Limits) -> int:
    """Validate a declared image shape and dtype against the limits; returns its size in bytes."""
    if dtype not in IMAGE_DTYPES:
        raise ApiError(422, ErrorCode.INVALID_INPUT, f"Image type {dtype!r} is not supported; use one of "
                                             f"{', '.join(IMAGE_DTYPES)}.")
    if len(shape) != 3 or any(n < 1 for n in shape):
        raise ApiError(422, ErrorCode.INVALID_INPUT, f"The image shape {list(shape)} must be three positive sizes.")
    if max(shape) > limits.max_dim:
        raise ApiError(413, ErrorCode.TOO_LARGE,
                       f"The image shape {list(shape)} exceeds {limits.max_dim} voxels on an axis.")
    voxels = math.prod(shape)
    if voxels > limits.max_image_voxels:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"The image has {voxels} voxels; this server accepts at most "
                                         f"{limits.max_image_voxels}.")
    nbytes = voxels * np.dtype(dtype).itemsize
    if nbytes > limits.max_image_bytes:
        raise too_large("image", nbytes, limits.max_image_bytes)
    return nbytes
