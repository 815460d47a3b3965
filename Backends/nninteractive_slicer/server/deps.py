"""Request dependencies shared by the routers: the server's core, the current user, and typed parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPBearer

from ..core.protocol import ACCEPT_CODECS_HEADER, REVISION_HEADER
from .core import ServerCore

_BEARER = HTTPBearer(auto_error=False, description="An API key of this server")


def get_core(request: Request) -> ServerCore:
    return request.app.state.core


Core = Annotated[ServerCore, Depends(get_core)]


def current_user(request: Request, _: Annotated[Any, Depends(_BEARER)]) -> str:
    """The user whose key :class:`.auth.AuthMiddleware` accepted (the bearer scheme documents it)."""
    return request.state.user


User = Annotated[str, Depends(current_user)]
SessionId = Annotated[str, PathParam(min_length=1, max_length=64)]
# Typed int (not int | None), so the schema does not invite a literal "null" header; absent means "don't check".
Revision = Annotated[int, Header(alias=REVISION_HEADER, ge=0, description="the revision the client expects")]
AcceptCodecs = Annotated[str | None, Header(alias=ACCEPT_CODECS_HEADER, max_length=200,
                                            description="codecs the client decodes, best first")]
