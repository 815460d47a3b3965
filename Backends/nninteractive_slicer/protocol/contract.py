"""The HTTP contract between this project's server (:mod:`..server`) and its client (:mod:`..backends.slicer_server`).

Both sides import their routes, error codes, header names, protocol version and server name from here,
so they cannot drift apart; ``Testing/test_protocol.py`` checks the server's app against this module.
Torch-free: the client runs inside 3D Slicer.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

from ..errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    InvalidPromptError,
    NoImageError,
    OutOfMemoryError,
    ServerBusyError,
    UndoError,
)

# Clients and servers of this protocol version understand each other.
PROTOCOL_VERSION = 1
# What /healthz and /v1/info call the server, so a client knows it reached one of ours.
SERVER_NAME = "nninteractive-slicer"

# The revision the client believes its session is at; a mutating call whose revision no longer matches is
# refused (revision_mismatch), so a call lost to a timeout is detected instead of applied twice.
REVISION_HEADER = "X-Revision"
# The codecs the client decodes, best first; the server packs replies with the first it also has.
ACCEPT_CODECS_HEADER = "X-Accept-Codecs"
# On Ray Serve (:mod:`..server.cluster`): the client's stable key for all calls of one backend, which the
# consistent-hash router maps to one replica, and the replica that answered.
AFFINITY_HEADER = "X-Affinity-Key"
REPLICA_HEADER = "X-Replica"


class Route(NamedTuple):
    """One endpoint: HTTP method and path template (``{name}`` path parameters)."""

    method: str
    path: str

    def url(self, **params: Any) -> str:
        """The path with its parameters filled in."""
        return self.path.format(**params)


_SESSION = "/v1/sessions/{session_id}"
_IMAGE = "/v1/images/{digest}"


class Routes:
    """Every endpoint of the API (``/docs`` and ``/openapi.json`` aside, which only browsers use)."""

    HEALTH = Route("GET", "/healthz")
    INFO = Route("GET", "/v1/info")
    METRICS = Route("GET", "/metrics")
    CREATE_SESSION = Route("POST", "/v1/sessions")
    SESSION_STATE = Route("GET", _SESSION)
    HEARTBEAT = Route("POST", _SESSION + "/heartbeat")
    CLOSE_SESSION = Route("DELETE", _SESSION)
    IMAGE_STATUS = Route("GET", _IMAGE)
    DELETE_IMAGE = Route("DELETE", _IMAGE)  # the user's hold on it; the image goes once nobody holds it
    UPLOAD_CHUNK = Route("PUT", _IMAGE + "/chunks/{index}")
    SET_IMAGE = Route("POST", _SESSION + "/image")
    SET_INITIAL_MASK = Route("POST", _SESSION + "/mask")
    RESET = Route("POST", _SESSION + "/reset")
    PROMPT = Route("POST", _SESSION + "/prompts")
    CROP_PROMPT = Route("POST", _SESSION + "/prompts/crop")
    UNDO = Route("POST", _SESSION + "/undo")  # ?steps=N (default 1)
    REDO = Route("POST", _SESSION + "/redo")  # ?steps=N (default 1)
    GET_MASK = Route("GET", _SESSION + "/mask")

    @classmethod
    def all(cls) -> dict[str, Route]:
        return {name: value for name, value in vars(cls).items() if isinstance(value, Route)}


class SessionUnknown(Exception):
    """The server no longer has the client's session, or it is not at the client's revision: the client
    rebuilds it (see the server backend's recovery); the user never sees this."""


class ImageUnknown(Exception):
    """The server does not hold the image (any more): the client uploads it again."""


class RouteUnknown(BackendUnavailableError):
    """The server has no such route: it is not an nnInteractive-Slicer server of this protocol."""


class ErrorCode(str, Enum):
    """The ``error`` field of every error reply (``{"error": code, "detail": message}``), with the HTTP status it
    is sent with and the typed error it stands for.

    The client branches on the code, not on the status: several codes share one status. The server sends, for
    a typed error, the first code declared for its nearest class (:func:`code_of_error`)."""

    status: int
    error: type[Exception]

    def __new__(cls, value: str, status: int, error: type[Exception]) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status, member.error = status, error
        return member

    # The client repairs these itself (see the server backend's recovery).
    SESSION_UNKNOWN = "session_unknown", 404, SessionUnknown  # expired, closed, reaped, or another user's
    REVISION_MISMATCH = "revision_mismatch", 409, SessionUnknown  # a call was lost: not where the client thinks
    IMAGE_UNKNOWN = "image_unknown", 404, ImageUnknown  # not (any more) in the server's cache
    # The user acts on these.
    NO_IMAGE = "no_image", 409, NoImageError  # a prompt or mask before any image
    UNDO_LIMIT = "undo_limit", 409, UndoError  # more steps to undo or redo than the session keeps; nothing changed
    UNAUTHORIZED = "unauthorized", 401, AuthenticationError
    BUSY = "busy", 503, ServerBusyError  # with Retry-After
    OUT_OF_MEMORY = "out_of_memory", 507, OutOfMemoryError
    INVALID_INPUT = "invalid_input", 422, InvalidPromptError  # a prompt, mask or image the model cannot take
    INVALID_REQUEST = "invalid_request", 422, InvalidPromptError  # a body or parameter that does not fit the schema
    DIGEST_MISMATCH = "digest_mismatch", 422, InvalidPromptError  # chunks do not add up to the announced image
    BAD_BODY = "bad_body", 400, InvalidPromptError  # a frame that cannot be decoded
    BAD_REQUEST = "bad_request", 400, InvalidPromptError  # a malformed request line or header
    TOO_LARGE = "too_large", 413, InvalidPromptError
    NOT_FOUND = "not_found", 404, RouteUnknown  # no such route
    BACKEND_FAILED = "backend_failed", 500, BackendError  # nnInteractive failed
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, BackendError
    INTERNAL = "internal", 500, BackendError  # a bug; the server's log has it
    HTTP_ERROR = "http_error", 0, BackendError  # any other HTTP status (read by its status, never sent)


def code_of_error(error: BaseException) -> ErrorCode | None:
    """The code the server sends for a typed error: the first declared for the nearest class of its type."""
    for cls in type(error).__mro__:
        for code in ErrorCode:
            if code.error is cls:
                return code
    return None


def code_of_status(status: int) -> ErrorCode:
    """For an error without a code (a proxy's reply, Starlette's own 404): the first code declared with its
    status that the user acts on (a session or image the client repairs is never guessed from a status)."""
    return next((code for code in ErrorCode if code.status == status and issubclass(code.error, BackendError)),
                ErrorCode.HTTP_ERROR)


def code_of_reply(code: str, status: int) -> ErrorCode:
    """What an error reply stands for: its own code, or, for a reply without one of ours, its status's."""
    known = next((member for member in ErrorCode if member.value == code), ErrorCode.HTTP_ERROR)
    return code_of_status(status) if known is ErrorCode.HTTP_ERROR else known
