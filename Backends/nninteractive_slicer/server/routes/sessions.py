"""Session records: claim one, read its state, keep it alive, close it."""

from __future__ import annotations

from fastapi import APIRouter

from ...protocol.contract import Routes
from ..deps import Runtime, SessionId, User
from ..schemas import Closed, SessionState
from . import endpoint

router = APIRouter(tags=["sessions"])

# OpenAPI links: where the session id of a new session goes (clients and schemathesis follow them).
_SESSION_LINKS = {
    op: {"operationId": op, "parameters": {"session_id": "$response.body#/session_id"}}
    for op in ("session_state", "heartbeat", "set_image", "set_initial_mask", "reset", "prompt", "crop_prompt",
               "undo", "get_mask", "close_session")
}


@endpoint(router, Routes.CREATE_SESSION, status_code=201, response_model=SessionState,
          responses={201: {"links": _SESSION_LINKS}})
async def create_session(runtime: Runtime, user: User) -> SessionState:
    return SessionState(**(await runtime.create_session(user)).state())


@endpoint(router, Routes.SESSION_STATE, response_model=SessionState)
def session_state(session_id: SessionId, runtime: Runtime, user: User) -> SessionState:
    with runtime.sessions.use(session_id, user, active=False) as session:
        return SessionState(**session.state())


@endpoint(router, Routes.HEARTBEAT, response_model=SessionState)
def heartbeat(session_id: SessionId, runtime: Runtime, user: User) -> SessionState:
    with runtime.sessions.use(session_id, user, active=False) as session:
        return SessionState(**session.state())


@endpoint(router, Routes.CLOSE_SESSION, response_model=Closed)
def close_session(session_id: SessionId, runtime: Runtime, user: User) -> Closed:
    runtime.close_session(runtime.sessions.remove(session_id, user), "client")
    return Closed(closed=True)
