"""Request dependencies shared by the routers: the server's runtime, the current user, typed parameters, and a route
class that parses JSON bodies off the event loop.

The dependencies are ``async`` although they never wait: FastAPI runs a plain ``def`` dependency in its thread
pool, and each such hop waits for a thread to be scheduled, which on a busy CPU costs milliseconds per request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from ..protocol.contract import ACCEPT_CODECS_HEADER, REVISION_HEADER
from .runtime import ServerRuntime

_BEARER = HTTPBearer(auto_error=False, description="An API key of this server")


async def get_runtime(request: Request) -> ServerRuntime:
    return request.app.state.runtime


Runtime = Annotated[ServerRuntime, Depends(get_runtime)]


async def current_user(request: Request, _: Annotated[Any, Depends(_BEARER)]) -> str:
    """The user whose key :class:`.auth.AuthMiddleware` accepted (the bearer scheme documents it)."""
    return request.state.user


User = Annotated[str, Depends(current_user)]
SessionId = Annotated[str, PathParam(min_length=1, max_length=64)]


async def expected_revision(
    revision: Annotated[int, Header(alias=REVISION_HEADER, ge=0, description="the revision the client expects")]
    = None,  # type: ignore[assignment]  # typed int, so the schema does not invite a literal "null" header
) -> int | None:
    """The revision the client expects its session at; None (absent) means "don't check"."""
    return revision


Revision = Annotated[int | None, Depends(expected_revision)]
Steps = Annotated[int, Query(ge=1, le=10_000, description="how many steps to undo or redo")]
AcceptCodecs = Annotated[str | None, Header(alias=ACCEPT_CODECS_HEADER, max_length=200,
                                            description="codecs the client decodes, best first")]


class _OffLoopJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = await run_in_threadpool(json.loads, await self.body())
        return self._json


class OffLoopJsonRoute(APIRoute):
    """Parses a route's JSON body in the thread pool: a body of up to 64 KiB (the JSON limit) parsed on the event
    loop would hold up every other request meanwhile."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_OffLoopJsonRequest(request.scope, request.receive))

        return route
