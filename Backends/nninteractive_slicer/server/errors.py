"""Every failure becomes a JSON ``{"error": code, "detail": message}`` with a 4xx (or a logged 5xx), never a
traceback, and never an exception that reaches uvicorn: uvicorn closes the connection after one, so the
client's next request on the same keep-alive connection would fail.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import BackendError, ServerBusyError
from ..protocol.contract import ErrorCode, Routes, code_of_error, code_of_status
from ..protocol.wire import WireError

log = logging.getLogger("nninteractive_slicer.server")


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code (the client branches on it) and a human message; the status
    is the code's (:class:`ErrorCode`), except for HTTP_ERROR, which carries the status it was raised with.

    An HTTPException, so FastAPI passes it through unchanged even when raised while it reads a body."""

    def __init__(self, code: ErrorCode, detail: str, headers: dict[str, str] | None = None,
                 status: int | None = None) -> None:
        status = status or code.status
        super().__init__(status, detail, headers or {})
        self.status, self.code = status, code.value


def from_backend_error(exc: Exception) -> ApiError:
    """The HTTP form of a typed backend (or wire) error: the code of its type (:func:`code_of_error`)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, WireError):
        return ApiError(ErrorCode.BAD_BODY, str(exc))
    if isinstance(exc, (RequestValidationError, ValidationError)):
        return ApiError(ErrorCode.INVALID_REQUEST, _validation_detail(exc))
    code = code_of_error(exc)
    if code is None:
        return ApiError(ErrorCode.INTERNAL, "The server failed on this request; its log has the details.")
    if isinstance(exc, ServerBusyError):
        retry = max(1, round(exc.retry_after or 5))
        return ApiError(code, str(exc), {"Retry-After": str(retry)})
    return ApiError(code, str(exc))


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse({"error": error.code, "detail": error.detail}, error.status, error.headers)


def _validation_detail(exc: RequestValidationError | ValidationError) -> str:
    """A readable summary of pydantic's errors; their ``input`` may be bytes, so it is left out."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)


def install_handlers(app: FastAPI) -> None:
    """Handlers for our errors, FastAPI's validation errors and Starlette's HTTP errors (404, 405)."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(BackendError)
    async def _backend(request: Request, exc: BackendError) -> JSONResponse:
        error = from_backend_error(exc)
        if isinstance(exc, ServerBusyError):  # a refusal, not a failure: one line, no traceback
            log.warning("refused: %s", exc, extra={"event": "refused", "user": getattr(request.state, "user", "-"),
                                                   "route": request.url.path, "retry_after": exc.retry_after})
        elif error.status >= 500:
            log.error("backend error: %s", exc, exc_info=exc)
        return error_response(error)

    @app.exception_handler(WireError)
    async def _wire(_: Request, exc: WireError) -> JSONResponse:
        return error_response(from_backend_error(exc))

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)  # frame headers, validated in the handlers
    async def _validation(_: Request, exc: RequestValidationError | ValidationError) -> JSONResponse:
        return error_response(from_backend_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = code_of_status(exc.status_code)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first route's methods; list all of this path's
            headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
        return error_response(ApiError(code, str(exc.detail), headers, status=exc.status_code))


def _allowed_methods(request: Request) -> set[str]:
    """The methods the contract serves on this path."""
    return {route.method for route in Routes.all().values() if compile_path(route.path)[0].match(request.url.path)}


class CatchAllMiddleware:
    """The last line: any exception becomes a JSON 500 (logged) instead of reaching uvicorn."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the point of this middleware
            error = from_backend_error(exc)
            if error.status >= 500:
                log.error("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            if not started:
                await send_json(send, error.status, {"error": error.code, "detail": error.detail},
                                dict(error.headers or {}))


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Send a complete JSON response from ASGI middleware."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
