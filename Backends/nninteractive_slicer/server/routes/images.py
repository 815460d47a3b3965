"""Content-addressed images: ask whether the server holds one, upload it in chunks."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from ...core.protocol import Routes
from ...core.wire import decode_frame
from ..deps import Core, User
from ..schemas import ChunkHeader, Digest, ImageStatus, UploadStatus
from . import FRAME_BODY, endpoint

router = APIRouter(tags=["images"])


@endpoint(router, Routes.IMAGE_STATUS, response_model=ImageStatus)
async def image_status(digest: Annotated[Digest, PathParam()], core: Core, user: User) -> ImageStatus:
    return ImageStatus(digest=digest, present=await run_in_threadpool(core.cache.contains, digest,
                                                                       core.image_owner(user)))


@endpoint(router, Routes.UPLOAD_CHUNK, response_model=UploadStatus, openapi_extra=FRAME_BODY)
async def upload_chunk(digest: Annotated[Digest, PathParam()], index: Annotated[int, PathParam(ge=0)],
                       request: Request, core: Core, user: User) -> UploadStatus:
    body = await request.body()
    core.metrics.upload_bytes.inc(len(body))

    def work() -> UploadStatus:
        raw, payload = decode_frame(body)
        head = ChunkHeader.model_validate(raw)
        progress = core.uploads.add_chunk(user, digest, index, tuple(head.shape), head.dtype,
                                          tuple(head.spacing), head.codec, head.chunk_elements, payload)
        return UploadStatus(**asdict(progress))

    return await run_in_threadpool(work)
