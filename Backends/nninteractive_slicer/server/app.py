"""The HTTP API (FastAPI): sessions, content-addressed images, prompts with changed-region replies.

Every route but ``/healthz`` needs a key (``/docs`` and ``/openapi.json`` included). Bodies are bounded
before they are read, frames and JSON are validated before anything is allocated, and every error is a
JSON body with a 4xx status (see :mod:`.errors`). Mutating calls take an optional ``X-Revision``: the
revision the client believes the session is at, so a call lost to a timeout is detected, not silently
applied twice.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Body, Depends, FastAPI, Header, Request, Response
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..core.engine import InteractiveSession
from ..core.protocol import (
    ACCEPT_CODECS_HEADER,
    PROTOCOL_VERSION,
    REVISION_HEADER,
    SERVER_NAME,
    ErrorCode,
    Route,
    Routes,
)
from ..core.wire import (
    AVAILABLE_CODECS,
    FRAME_CONTENT_TYPE,
    choose_codec,
    decode_frame,
    encode_frame,
    pack_mask,
    unpack_mask,
)
from ..interface import BBox, Lasso, Point, Prompt, PromptResult, Scribble, box_shape, normalize_box, validate_prompt
from ..interface import validate_mask as validate_full_mask
from .auth import AuthMiddleware
from .config import ServerConfig
from .core import ServerCore
from .errors import ApiError, CatchAllMiddleware, install_handlers
from .limits import BodyLimitMiddleware
from .schemas import (
    ChunkHeader,
    Closed,
    CropHeader,
    Digest,
    ErrorBody,
    Health,
    ImageStatus,
    Info,
    JsonPrompt,
    MaskHeader,
    SessionState,
    SetImageBody,
    UploadStatus,
)
from .sessions import ServerSession

log = logging.getLogger("nninteractive_slicer.server")
F = TypeVar("F", bound=Callable[..., Any])

_ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 422, 500, 503, 507)}
_FRAME_BODY = {"requestBody": {"required": True, "content": {FRAME_CONTENT_TYPE: {"schema": {
    "type": "string", "format": "binary"}}}}}
_FRAME_REPLY: dict[int | str, dict[str, Any]] = {200: {"content": {FRAME_CONTENT_TYPE: {"schema": {
    "type": "string", "format": "binary"}}}, "description": "A frame: JSON header (changed box, backend_ms, "
                                                           "revision) and the packed mask inside the box."}}

# OpenAPI links: where the session id of a new session goes (clients and schemathesis follow them).
_SESSION_LINKS = {
    op: {"operationId": op, "parameters": {"session_id": "$response.body#/session_id"}}
    for op in ("session_state", "heartbeat", "set_image", "set_initial_mask", "reset", "prompt", "crop_prompt",
               "undo", "get_mask", "close_session")
}
SessionId = Annotated[str, PathParam(min_length=1, max_length=64)]
# Typed int (not int | None), so the schema does not invite a literal "null" header; absent means "don't check".
Revision = Annotated[int, Header(alias=REVISION_HEADER, ge=0, description="the revision the client expects")]
AcceptCodecs = Annotated[str | None, Header(alias=ACCEPT_CODECS_HEADER, max_length=200,
                                            description="codecs the client decodes, best first")]


_BEARER = HTTPBearer(auto_error=False, description="An API key of this server")


def current_user(request: Request, _: Annotated[Any, Depends(_BEARER)]) -> str:
    """The user whose key :class:`.auth.AuthMiddleware` accepted (the bearer scheme documents it)."""
    return request.state.user


User = Annotated[str, Depends(current_user)]


def endpoint(app: FastAPI, route: Route, **options: Any) -> Callable[[F], F]:
    """Register a handler for one route of the contract (:mod:`..core.protocol`), with its method."""
    return app.api_route(route.path, methods=[route.method], **options)


def create_app(config: ServerConfig, core: ServerCore | None = None) -> FastAPI:
    """The app; builds a :class:`ServerCore` (loading the model) unless one is given."""
    core = core or ServerCore(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reapers = [asyncio.create_task(core.reap_forever("idle", config.idle_timeout_s)),
                   asyncio.create_task(core.reap_forever("dead", config.liveness_timeout_s))]
        try:
            yield
        finally:
            for task in reapers:
                task.cancel()
            core.shutdown()

    app = FastAPI(title="nnInteractive for 3D Slicer: inference server", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None, responses=_ERRORS,
                  generate_unique_id_function=lambda route: route.name)
    app.state.core = core
    install_handlers(app)
    app.add_middleware(AccessLogMiddleware, core=core)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=config.limits.max_body_bytes)
    app.add_middleware(AuthMiddleware, authenticator=core.auth, max_body_bytes=config.limits.max_body_bytes)
    app.add_middleware(CatchAllMiddleware)  # added last: outermost

    # -- open and meta routes ------------------------------------------------------------------------
    @endpoint(app, Routes.HEALTH, response_model=Health, tags=["meta"])
    def healthz() -> Health:
        return Health(status="ok", server=SERVER_NAME, version=__version__, protocol_version=PROTOCOL_VERSION)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    @endpoint(app, Routes.INFO, response_model=Info, tags=["meta"])
    def info(_: User) -> Info:
        return _info(core)

    @endpoint(app, Routes.METRICS, tags=["meta"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics(_: User) -> Response:
        return Response(core.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- sessions -------------------------------------------------------------------------------------
    @endpoint(app, Routes.CREATE_SESSION, status_code=201, response_model=SessionState, tags=["sessions"],
              responses={201: {"links": _SESSION_LINKS}})
    async def create_session(user: User) -> SessionState:
        return _state(await core.create_session(user))

    @endpoint(app, Routes.SESSION_STATE, response_model=SessionState, tags=["sessions"])
    def session_state(session_id: SessionId, user: User) -> SessionState:
        with core.sessions.use(session_id, user, active=False) as session:
            return _state(session)

    @endpoint(app, Routes.HEARTBEAT, response_model=SessionState, tags=["sessions"])
    def heartbeat(session_id: SessionId, user: User) -> SessionState:
        with core.sessions.use(session_id, user, active=False) as session:
            return _state(session)

    @endpoint(app, Routes.CLOSE_SESSION, response_model=Closed, tags=["sessions"])
    def close_session(session_id: SessionId, user: User) -> Closed:
        core.close_session(core.sessions.remove(session_id, user), "client")
        return Closed(closed=True)

    # -- images ---------------------------------------------------------------------------------------
    @endpoint(app, Routes.IMAGE_STATUS, response_model=ImageStatus, tags=["images"])
    async def image_status(digest: Annotated[Digest, PathParam()], user: User) -> ImageStatus:
        return ImageStatus(digest=digest, present=await run_in_threadpool(core.cache.contains, digest,
                                                                           core.image_owner(user)))

    @endpoint(app, Routes.UPLOAD_CHUNK, response_model=UploadStatus, tags=["images"],
             openapi_extra=_FRAME_BODY)
    async def upload_chunk(digest: Annotated[Digest, PathParam()], index: Annotated[int, PathParam(ge=0)],
                           request: Request, user: User) -> UploadStatus:
        body = await request.body()
        core.metrics.upload_bytes.inc(len(body))

        def work() -> UploadStatus:
            raw, payload = decode_frame(body)
            head = ChunkHeader.model_validate(raw)
            progress = core.uploads.add_chunk(user, digest, index, tuple(head.shape), head.dtype,
                                              tuple(head.spacing), head.codec, head.chunk_elements, payload)
            return UploadStatus(**asdict(progress))

        return await run_in_threadpool(work)

    @endpoint(app, Routes.SET_IMAGE, response_model=SessionState, tags=["session calls"])
    async def set_image(session_id: SessionId, body: SetImageBody, user: User, revision: Revision = None
                        ) -> SessionState:
        with core.sessions.use(session_id, user) as session:
            image = await run_in_threadpool(core.cache.get, body.digest, core.image_owner(user))
            if image is None:
                raise ApiError(404, ErrorCode.IMAGE_UNKNOWN, "The server does not hold this image; upload it first.")

            def run(engine: InteractiveSession) -> None:
                engine.set_image(image.array, image.spacing)
                session.image_digest = image.digest

            _, state = await core.in_session(session, revision, run)
            log.info("image set", extra={"event": "image_set", "user": user, "session": session_id[:8],
                                         "digest": body.digest[:12], "shape": list(image.array.shape)})
            return SessionState(**state)

    @endpoint(app, Routes.SET_INITIAL_MASK, response_model=SessionState, tags=["session calls"],
              openapi_extra=_FRAME_BODY)
    async def set_initial_mask(session_id: SessionId, request: Request, user: User, revision: Revision = None
                               ) -> SessionState:
        with core.sessions.use(session_id, user) as session:
            body = await request.body()
            shape = _require_image(session)

            def decode() -> np.ndarray:
                raw, payload = decode_frame(body)
                head = MaskHeader.model_validate(raw)
                if tuple(head.shape) != shape:
                    raise ApiError(422, ErrorCode.INVALID_INPUT, f"The starting mask has shape {head.shape}, the image "
                                                         f"has {list(shape)}.")
                return unpack_mask(payload, shape, head.codec)

            mask = await run_in_threadpool(decode)
            _, state = await core.in_session(
                session, revision, lambda engine: engine.set_initial_mask(validate_full_mask(mask, engine.mask.shape)))
            return SessionState(**state)

    @endpoint(app, Routes.RESET, response_model=SessionState, tags=["session calls"])
    async def reset(session_id: SessionId, user: User, revision: Revision = None) -> SessionState:
        with core.sessions.use(session_id, user) as session:
            _require_image(session)
            _, state = await core.in_session(session, revision, lambda engine: engine.reset())
            return SessionState(**state)

    @endpoint(app, Routes.PROMPT, tags=["session calls"], response_class=Response,
              responses=_FRAME_REPLY)
    async def prompt(session_id: SessionId, body: Annotated[JsonPrompt, Body()], user: User,
                     revision: Revision = None, accept: AcceptCodecs = None) -> Response:
        if body.kind == "point":
            parsed: Prompt = Point(tuple(body.coord), body.positive)  # type: ignore[arg-type]
        else:
            parsed = BBox(tuple(tuple(r) for r in body.box), body.positive)  # type: ignore[arg-type]
        return await _run_prompt(core, session_id, user, revision, accept, lambda _: parsed)

    @endpoint(app, Routes.CROP_PROMPT, tags=["session calls"], response_class=Response,
              responses=_FRAME_REPLY, openapi_extra=_FRAME_BODY)
    async def crop_prompt(session_id: SessionId, request: Request, user: User, revision: Revision = None,
                          accept: AcceptCodecs = None) -> Response:
        body = await request.body()

        def decode(shape: tuple[int, int, int]) -> Prompt:
            raw, payload = decode_frame(body)
            head = CropHeader.model_validate(raw)
            box = normalize_box(head.box, shape, head.kind)  # inside the image before the crop is unpacked
            crop = unpack_mask(payload, box_shape(box), head.codec)
            return (Lasso if head.kind == "lasso" else Scribble)(crop, box, head.positive)

        return await _run_prompt(core, session_id, user, revision, accept, decode)

    @endpoint(app, Routes.UNDO, tags=["session calls"], response_class=Response,
              responses=_FRAME_REPLY)
    async def undo(session_id: SessionId, user: User, revision: Revision = None, accept: AcceptCodecs = None
                   ) -> Response:
        with core.sessions.use(session_id, user) as session:
            _require_image(session)

            def run(engine: InteractiveSession) -> PromptResult:
                undoing = engine.can_undo
                result = engine.undo()
                session.revision += undoing  # nothing to undo changes nothing
                return result

            result, state = await core.in_session(session, revision, run, mutates=False)
            return await _frame_reply(core, result, state, accept, "undo")

    @endpoint(app, Routes.GET_MASK, tags=["session calls"], response_class=Response,
             responses=_FRAME_REPLY)
    async def get_mask(session_id: SessionId, user: User, accept: AcceptCodecs = None) -> Response:
        with core.sessions.use(session_id, user, active=False) as session:
            _require_image(session)
            mask, state = await core.in_session(session, None, lambda engine: engine.mask.copy(), mutates=False)
            codec = choose_codec(accept)
            payload = await run_in_threadpool(pack_mask, mask, codec)
            return Response(encode_frame({"shape": list(mask.shape), "codec": codec, "revision": state["revision"]},
                                         payload), media_type=FRAME_CONTENT_TYPE)

    return app


async def _run_prompt(core: ServerCore, session_id: str, user: str, revision: int | None, accept: str | None,
                      decode: Any) -> Response:
    """Decode (thread pool), validate and predict (device thread), encode the changed region (thread pool)."""
    with core.sessions.use(session_id, user) as session:
        shape = _require_image(session)
        prompt = await run_in_threadpool(decode, shape)

        def run(engine: InteractiveSession) -> PromptResult:
            valid = validate_prompt(prompt, engine.mask.shape, core.model.capabilities)
            return engine.prompt(valid)

        result, state = await core.in_session(session, revision, run)
        return await _frame_reply(core, result, state, accept, prompt.kind)


async def _frame_reply(core: ServerCore, result: PromptResult, state: dict[str, Any], accept: str | None,
                       kind: str) -> Response:
    if result.backend_ms is not None:
        core.metrics.prediction.labels(kind).observe(result.backend_ms / 1000)
    codec = choose_codec(accept)
    header = {"changed": result.changed, "box": [list(r) for r in result.box] if result.changed else None,
              "backend_ms": result.backend_ms, "revision": state["revision"],
              "prompt_count": state["prompt_count"], "codec": codec}
    payload = await run_in_threadpool(pack_mask, result.patch, codec) if result.changed else b""
    return Response(encode_frame(header, payload), media_type=FRAME_CONTENT_TYPE)


def _require_image(session: ServerSession) -> tuple[int, int, int]:
    shape = session.shape
    if shape is None:
        raise ApiError(409, ErrorCode.NO_IMAGE, "No image has been sent to this session yet: select a volume first.")
    return shape


def _state(session: ServerSession) -> SessionState:
    return SessionState(**session.state())


def _info(core: ServerCore) -> Info:
    import torch

    caps = core.model.capabilities
    config = core.config
    return Info(
        server=SERVER_NAME, version=__version__, protocol_version=PROTOCOL_VERSION, model_id=caps.model_id,
        license=caps.license, device=caps.device, capabilities=asdict(caps), codecs=list(AVAILABLE_CODECS),
        limits=config.limits.as_dict(),
        timeouts={"idle_s": config.idle_timeout_s, "liveness_s": config.liveness_timeout_s},
        sessions={"open": len(core.sessions), "max": config.max_sessions},
        versions={"nninteractive_slicer": __version__, "nninteractive": _version("nninteractive"),
                  "torch": torch.__version__, "python": platform.python_version()},
        auth=core.auth.enabled,
    )


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


class AccessLogMiddleware:
    """One structured log line and one request count per request, with the user and the route template."""

    def __init__(self, app: ASGIApp, core: ServerCore) -> None:
        self.app, self.core = app, core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            user = scope.get("state", {}).get("user", "-")
            self.core.metrics.requests.labels(scope["method"], route, str(status)).inc()
            log.info("request", extra={"event": "request", "user": user, "method": scope["method"], "route": route,
                                       "session": scope.get("path_params", {}).get("session_id", "")[:8],
                                       "status": status, "ms": round((time.perf_counter() - started) * 1000, 1)})
