"""The API's routers, one per resource: meta, sessions, images and the calls inside a session.

Each handler is registered for one route of the contract (:mod:`...protocol.contract`), with its method, so the
server serves exactly what the client calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter

from ...protocol.contract import Route
from ...protocol.wire import FRAME_CONTENT_TYPE

F = TypeVar("F", bound=Callable[..., Any])

_BINARY = {"schema": {"type": "string", "format": "binary"}}
FRAME_BODY = {"requestBody": {"required": True, "content": {FRAME_CONTENT_TYPE: _BINARY}}}
FRAME_REPLY: dict[int | str, dict[str, Any]] = {200: {
    "content": {FRAME_CONTENT_TYPE: _BINARY},
    "description": "A frame: JSON header (changed box, backend_ms, revision) and the packed mask inside the box.",
}}


def endpoint(router: APIRouter, route: Route, **options: Any) -> Callable[[F], F]:
    """Register a handler for ``route`` with the contract's method."""
    return router.api_route(route.path, methods=[route.method], **options)
