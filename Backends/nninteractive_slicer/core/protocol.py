"""The HTTP contract between this project's server (:mod:`..server`) and its client (:mod:`..backends.slicer_server`).

Both sides import their routes, error codes, header names, protocol version and server name from here,
so they cannot drift apart; ``Testing/test_protocol.py`` checks the server's app against this module.
Torch-free: the client runs inside 3D Slicer.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

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


class ErrorCode(str, Enum):
    """The ``error`` field of every error reply (``{"error": code, "detail": message}``).

    The client branches on the code, not on the status: several codes share one status."""

    # The client repairs these itself (see the remote backend's recovery).
    SESSION_UNKNOWN = "session_unknown"  # 404: expired, closed, reaped, or another user's
    REVISION_MISMATCH = "revision_mismatch"  # 409: a call was lost; the session is not where the client thinks
    IMAGE_UNKNOWN = "image_unknown"  # 404: the image is not (any more) in the server's cache
    # The user acts on these.
    NO_IMAGE = "no_image"  # 409: a prompt or mask before any image
    UNDO_LIMIT = "undo_limit"  # 409: more steps to undo or redo than the session keeps; nothing changed
    UNAUTHORIZED = "unauthorized"  # 401
    BUSY = "busy"  # 503, with Retry-After
    OUT_OF_MEMORY = "out_of_memory"  # 507
    INVALID_INPUT = "invalid_input"  # 422: a prompt, mask or image the model cannot take
    INVALID_REQUEST = "invalid_request"  # 422: a body or parameter that does not match the schema
    DIGEST_MISMATCH = "digest_mismatch"  # 422: uploaded chunks do not add up to the announced image
    BAD_BODY = "bad_body"  # 400: a frame that cannot be decoded
    BAD_REQUEST = "bad_request"  # 400: a malformed request line or header
    TOO_LARGE = "too_large"  # 413
    NOT_FOUND = "not_found"  # 404: no such route
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    BACKEND_FAILED = "backend_failed"  # 500: nnInteractive failed
    INTERNAL = "internal"  # 500: a bug; the server's log has it
    HTTP_ERROR = "http_error"  # any other HTTP status
