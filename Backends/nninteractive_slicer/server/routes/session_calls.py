"""Calls inside a session: image, starting mask, reset, prompts, undo and redo, and reading the mask.

Handlers decode in the thread pool and run the engine on the device thread (:meth:`ServerRuntime.in_session`);
mutating calls check the client's revision there, and replies carry the changed region only. A step's undo
snapshot is taken in the background a moment later (:mod:`...engine.snapshots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Request, Response
from starlette.concurrency import run_in_threadpool

from ...engine.engine import Engine
from ...interface import BBox, Lasso, Point, Prompt, PromptResult, Scribble, box_shape, normalize_box, validate_prompt
from ...interface import validate_mask as validate_full_mask
from ...protocol.bodies import ChangedRegion
from ...protocol.contract import ErrorCode, Routes
from ...protocol.wire import FRAME_CONTENT_TYPE, choose_codec, decode_frame, encode_frame, pack_mask, unpack_mask
from ..deps import AcceptCodecs, OffLoopJsonRoute, Revision, Runtime, SessionId, Steps, User
from ..errors import ApiError
from ..runtime import ServerRuntime
from ..schemas import CropHeader, JsonPrompt, MaskHeader, SessionState, SetImageBody
from ..sessions import ServerSession
from ..size_checks import check_prompt_size
from . import FRAME_BODY, FRAME_REPLY, endpoint

log = logging.getLogger("nninteractive_slicer.server")
router = APIRouter(tags=["session calls"], route_class=OffLoopJsonRoute)


@endpoint(router, Routes.SET_IMAGE, response_model=SessionState)
async def set_image(session_id: SessionId, body: SetImageBody, runtime: Runtime, user: User, revision: Revision
                    ) -> SessionState:
    with runtime.sessions.use(session_id, user) as session:
        image = await run_in_threadpool(runtime.cache.use, body.digest, user, session_id)
        if image is None:
            raise ApiError(ErrorCode.IMAGE_UNKNOWN, "The server does not hold this image; upload it first.")
        runtime.sessions.reserve_memory(session, image.array.shape)

        def start(engine: Engine) -> Future[Any] | None:
            if session.binding:
                raise ApiError(ErrorCode.NO_IMAGE, "Another image is being set on this session: wait for it.")
            preparing = engine.start_image(image.array, image.spacing)
            session.binding = True
            return preparing

        def finish(engine: Engine) -> None:
            try:
                engine.finish_image(image.array.shape)
            except BaseException:
                engine.drop_image()  # no image (409 no_image) until a bind succeeds; never a half-set one
                session.image_digest = None
                raise
            finally:
                session.binding = False
            session.image_digest = image.digest

        # Preprocessing runs in nnInteractive's own threads: wait for it here, not on the device thread, so
        # that other sessions' prompts go on meanwhile. Between the halves the session refuses other calls
        # (see ServerRuntime.session_call), and the second half is queued whatever happens to this request.
        preparing, started = await runtime.in_session(session, revision, start)
        try:
            if preparing is not None:
                with contextlib.suppress(Exception):  # finish_image raises it, typed
                    await asyncio.wrap_future(preparing)
        finally:
            finishing = runtime.session_call(session, started["revision"], finish, binding=True)
        _, state = await asyncio.wrap_future(finishing)
        log.info("image set", extra={"event": "image_set", "user": user, "session": session_id[:8],
                                     "digest": body.digest[:12], "shape": list(image.array.shape)})
        return SessionState(**state)


@endpoint(router, Routes.SET_INITIAL_MASK, response_model=SessionState, openapi_extra=FRAME_BODY)
async def set_initial_mask(session_id: SessionId, request: Request, runtime: Runtime, user: User,
                           revision: Revision) -> SessionState:
    with runtime.sessions.use(session_id, user) as session:
        body = await request.body()
        shape = _require_image(session)

        def decode() -> np.ndarray:
            raw, payload = decode_frame(body)
            head = MaskHeader.model_validate(raw)
            if tuple(head.shape) != shape:
                raise ApiError(ErrorCode.INVALID_INPUT, f"The starting mask has shape {head.shape}, the image "
                                                             f"has {list(shape)}.")
            return unpack_mask(payload, shape, head.codec)

        mask = await run_in_threadpool(decode)
        _, state = await runtime.in_session(
            session, revision, lambda engine: engine.set_initial_mask(validate_full_mask(mask, engine.image_shape)))
        return SessionState(**state)


@endpoint(router, Routes.RESET, response_model=SessionState)
async def reset(session_id: SessionId, runtime: Runtime, user: User, revision: Revision) -> SessionState:
    with runtime.sessions.use(session_id, user) as session:
        _require_image(session)
        _, state = await runtime.in_session(session, revision, lambda engine: engine.reset())
        return SessionState(**state)


@endpoint(router, Routes.PROMPT, response_class=Response, responses=FRAME_REPLY)
async def prompt(session_id: SessionId, body: Annotated[JsonPrompt, Body()], runtime: Runtime, user: User,
                 revision: Revision, accept: AcceptCodecs = None) -> Response:
    if body.kind == "point":
        parsed: Prompt = Point(tuple(body.coord), body.positive)  # type: ignore[arg-type]
    else:
        parsed = BBox(tuple(tuple(r) for r in body.box), body.positive)  # type: ignore[arg-type]
    return await _run_prompt(runtime, session_id, user, revision, accept, lambda _: parsed)


@endpoint(router, Routes.CROP_PROMPT, response_class=Response, responses=FRAME_REPLY, openapi_extra=FRAME_BODY)
async def crop_prompt(session_id: SessionId, request: Request, runtime: Runtime, user: User, revision: Revision,
                      accept: AcceptCodecs = None) -> Response:
    body = await request.body()

    def decode(shape: tuple[int, int, int]) -> Prompt:
        raw, payload = decode_frame(body)
        head = CropHeader.model_validate(raw)
        box = normalize_box(head.box, shape, head.kind)  # inside the image before the crop is unpacked
        check_prompt_size(box, runtime.config.limits)
        crop = unpack_mask(payload, box_shape(box), head.codec)
        return (Lasso if head.kind == "lasso" else Scribble)(crop, box, head.positive)

    return await _run_prompt(runtime, session_id, user, revision, accept, decode)


@endpoint(router, Routes.UNDO, response_class=Response, responses=FRAME_REPLY)
async def undo(session_id: SessionId, runtime: Runtime, user: User, revision: Revision, steps: Steps = 1,
               accept: AcceptCodecs = None) -> Response:
    return await _move(runtime, session_id, user, revision, accept, "undo", steps)


@endpoint(router, Routes.REDO, response_class=Response, responses=FRAME_REPLY)
async def redo(session_id: SessionId, runtime: Runtime, user: User, revision: Revision, steps: Steps = 1,
               accept: AcceptCodecs = None) -> Response:
    return await _move(runtime, session_id, user, revision, accept, "redo", steps)


async def _move(runtime: ServerRuntime, session_id: str, user: str, revision: int | None, accept: str | None,
                action: str, steps: int) -> Response:
    """Undo or redo ``steps`` steps; more than the session keeps is an undo_limit error that changes nothing."""
    with runtime.sessions.use(session_id, user) as session:
        _require_image(session)
        result, state = await runtime.in_session(session, revision, lambda engine: getattr(engine, action)(steps))
        return await _frame_reply(runtime, result, state, accept, action)


@endpoint(router, Routes.GET_MASK, response_class=Response, responses=FRAME_REPLY)
async def get_mask(session_id: SessionId, runtime: Runtime, user: User, accept: AcceptCodecs = None) -> Response:
    with runtime.sessions.use(session_id, user, active=False) as session:
        _require_image(session)
        mask, state = await runtime.in_session(session, None, lambda engine: engine.mask_copy(), mutates=False)
        codec = choose_codec(accept)
        payload = await run_in_threadpool(pack_mask, mask, codec)
        return Response(encode_frame({"shape": list(mask.shape), "codec": codec, "revision": state["revision"]},
                                     payload), media_type=FRAME_CONTENT_TYPE)


async def _run_prompt(runtime: ServerRuntime, session_id: str, user: str, revision: int | None, accept: str | None,
                      decode: Callable[[tuple[int, int, int]], Prompt]) -> Response:
    """Decode (thread pool), validate and predict (device thread), encode the changed region (thread pool)."""
    with runtime.sessions.use(session_id, user) as session:
        shape = _require_image(session)
        prompt = await run_in_threadpool(decode, shape)

        def run(engine: Engine) -> PromptResult:
            valid = validate_prompt(prompt, engine.image_shape, runtime.model.capabilities)
            return engine.prompt(valid)

        result, state = await runtime.in_session(session, revision, run)
        return await _frame_reply(runtime, result, state, accept, prompt.kind)


async def _frame_reply(runtime: ServerRuntime, result: PromptResult, state: dict[str, Any], accept: str | None,
                       kind: str) -> Response:
    if result.backend_ms is not None:
        runtime.metrics.prediction.labels(kind).observe(result.backend_ms / 1000)
    codec = choose_codec(accept)
    box, patch = result.box, result.patch
    header = ChangedRegion(changed=result.changed, revision=state["revision"], prompt_count=state["prompt_count"],
                           undo=state["undo"], redo=state["redo"], codec=codec,
                           box=[list(r) for r in box] if box is not None else None, backend_ms=result.backend_ms)
    payload = await run_in_threadpool(pack_mask, patch, codec) if patch is not None else b""
    return Response(encode_frame(header.to_json(), payload), media_type=FRAME_CONTENT_TYPE)


def _require_image(session: ServerSession) -> tuple[int, int, int]:
    shape = session.shape
    if shape is None:
        raise ApiError(ErrorCode.NO_IMAGE, "No image has been sent to this session yet: select a volume first.")
    return shape
