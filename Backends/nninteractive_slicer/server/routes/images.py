"""Content-addressed images: ask whether the server holds one, upload it in chunks."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, TypeVar

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from ...core.protocol import Routes
from ...core.wire import decode_frame
from ..deps import Core, User
from ..schemas import ChunkHeader, Digest, ImageStatus, UploadStatus
from . import FRAME_BODY, endpoint

router = APIRouter(tags=["images"])
T = TypeVar("T")


@endpoint(router, Routes.IMAGE_STATUS, response_model=ImageStatus)
async def image_status(digest: Annotated[Digest, PathParam()], core: Core, user: User) -> ImageStatus:
    return ImageStatus(digest=digest, present=await run_in_threadpool(core.cache.contains, digest,
                                                                       core.image_owner(user)))


@endpoint(router, Routes.UPLOAD_CHUNK, response_model=UploadStatus, openapi_extra=FRAME_BODY)
async def upload_chunk(digest: Annotated[Digest, PathParam()], index: Annotated[int, PathParam(ge=0)],
                       request: Request, core: Core, user: User) -> UploadStatus:
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else core.config.limits.max_body_bytes
    async with core.bodies.hold(user, size):  # read only once the user's bodies in flight leave room
        body = await request.body()
        core.metrics.upload_bytes.inc(len(body))

        def work() -> UploadStatus:
            raw, payload = decode_frame(body)
            head = ChunkHeader.model_validate(raw)
            progress = core.uploads.add_chunk(user, digest, index, _triple(head.shape), head.dtype,
                                              _triple(head.spacing), head.codec, head.chunk_elements, payload)
            return UploadStatus(**asdict(progress))

        return await run_in_threadpool(work)


def _triple(values: list[T]) -> tuple[T, T, T]:
    """A validated three-element list (schemas check the length) as a tuple."""
    return values[0], values[1], values[2]
