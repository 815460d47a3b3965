"""Content-addressed images: ask whether the server holds one for you, upload it in chunks, delete it."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from ...errors import ServerBusyError
from ...protocol.contract import ErrorCode, Routes
from ...protocol.wire import decode_frame
from ..deps import Runtime, User
from ..errors import ApiError
from ..schemas import ChunkHeader, Digest, ImageStatus, UploadStatus
from . import FRAME_BODY, endpoint

router = APIRouter(tags=["images"])
T = TypeVar("T")


@endpoint(router, Routes.IMAGE_STATUS, response_model=ImageStatus)
async def image_status(digest: Annotated[Digest, PathParam()], runtime: Runtime, user: User) -> ImageStatus:
    return ImageStatus(digest=digest, present=await run_in_threadpool(runtime.cache.status, digest, user))


@endpoint(router, Routes.DELETE_IMAGE, response_model=ImageStatus)
async def delete_image(digest: Annotated[Digest, PathParam()], runtime: Runtime, user: User) -> ImageStatus:
    """Forget the image for this user now (their sessions on it end); it leaves memory and disk once no
    other user who sent it still holds it."""
    for session in runtime.sessions.remove_using(user, digest):
        runtime.close_session(session, "image_deleted")
    try:
        deleted = await run_in_threadpool(runtime.cache.delete, digest, user)
    except OSError as exc:
        raise ServerBusyError(f"The image could not be deleted from the disk cache ({exc.strerror}); it is no "
                              "longer served. Try again: the server also retries by itself.", 5) from exc
    if not deleted:
        raise ApiError(ErrorCode.IMAGE_UNKNOWN, "You hold no such image on this server.")
    return ImageStatus(digest=digest, present=False)


@endpoint(router, Routes.UPLOAD_CHUNK, response_model=UploadStatus, openapi_extra=FRAME_BODY)
async def upload_chunk(digest: Annotated[Digest, PathParam()], index: Annotated[int, PathParam(ge=0)],
                       request: Request, runtime: Runtime, user: User) -> UploadStatus:
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else runtime.config.limits.max_body_bytes
    async with runtime.bodies.hold(user, size):  # read only once the user's bodies in flight leave room
        body = await request.body()
        runtime.metrics.upload_bytes.inc(len(body))

        def work() -> UploadStatus:
            raw, payload = decode_frame(body)
            head = ChunkHeader.model_validate(raw)
            progress = runtime.uploads.add_chunk(user, digest, index, _triple(head.shape), head.dtype,
                                              _triple(head.spacing), head.codec, head.chunk_elements, payload)
            return UploadStatus(**progress.to_json())

        return await run_in_threadpool(work)


def _triple(values: list[T]) -> tuple[T, T, T]:
    """A validated three-element list (schemas check the length) as a tuple."""
    return values[0], values[1], values[2]
