"""The JSON bodies of the HTTP contract and the JSON headers of its frames, described once, torch- and
pydantic-free: the client builds its requests and checks the server's replies through these.

The server's pydantic models (:mod:`..server.schemas`) describe the same bodies with their constraints for
validation and OpenAPI; ``Testing/test_protocol.py`` checks that the two agree field by field. Checking here is
by JSON type only (a string is never a number, nor 1 true); what a value must mean (a box inside the image) is
checked where it is used.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from types import NoneType, UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

B = TypeVar("B", bound="Body")


class BodyError(ValueError):
    """A body that does not fit its description."""


@dataclass(frozen=True)
class Body:
    """A body of the contract: built with keywords, sent as :meth:`to_json`, read back with :meth:`read`."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls: type[B], data: Any) -> B:
        """The body ``data`` describes; fields it does not know are ignored (a newer peer may add some)."""
        if not isinstance(data, dict):
            raise BodyError(f"{cls.__name__} must be a JSON object.")
        hints = get_type_hints(cls)
        values = {}
        for spec in fields(cls):
            if spec.name not in data:
                if spec.default is MISSING:
                    raise BodyError(f"{cls.__name__} lacks '{spec.name}'.")
                continue
            hint, value = hints[spec.name], data[spec.name]
            if isinstance(hint, type) and issubclass(hint, Body):
                values[spec.name] = hint.read(value)
            elif _fits(value, hint):
                values[spec.name] = value
            else:
                raise BodyError(f"{cls.__name__}'s '{spec.name}' is {value!r}, not a {hint}.")
        return cls(**values)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type ``hint`` names (int, float, bool, str, list, dict, Literal, unions)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is Literal:
        return value in args and type(value) in {type(arg) for arg in args}
    if origin is list:
        return isinstance(value, list) and all(_fits(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and _fits(v, args[1]) for k, v in value.items())
    if hint is float:
        return type(value) in (int, float) and math.isfinite(value)
    if hint is Any:
        return True
    if hint is NoneType:
        return value is None
    return type(value) is hint  # int, bool, str, dict: exactly, so that True is no 1


Box = list[list[int]]  # [[start, end), ...] per axis
Codec = str  # a name of the wire's codecs; one it lacks fails to decode


# -- requests ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointPrompt(Body):
    coord: list[int]
    positive: bool = True
    kind: Literal["point"] = "point"


@dataclass(frozen=True)
class BBoxPrompt(Body):
    box: Box
    positive: bool = True
    kind: Literal["bbox"] = "bbox"


@dataclass(frozen=True)
class CropHeader(Body):
    """Frame header of a scribble or lasso: the payload is the packed crop covering ``box``."""

    kind: Literal["scribble", "lasso"]
    box: Box
    codec: Codec
    positive: bool = True


@dataclass(frozen=True)
class MaskHeader(Body):
    """Frame header of a whole mask (a starting mask sent, or the session's mask read back)."""

    codec: Codec
    shape: list[int]


@dataclass(frozen=True)
class ChunkHeader(Body):
    """Frame header of one image chunk: elements [index * chunk_elements, ...) of the flattened image."""

    shape: list[int]
    dtype: str
    spacing: list[float]
    codec: Codec
    chunk_elements: int


@dataclass(frozen=True)
class SetImageBody(Body):
    digest: str


# -- replies -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Health(Body):
    status: Literal["ok"]
    server: str
    version: str
    protocol_version: int


@dataclass(frozen=True)
class SessionState(Body):
    session_id: str
    revision: int
    image_digest: str | None
    shape: list[int] | None
    prompt_count: int
    can_undo: bool
    undo: int  # steps that can be undone now
    redo: int  # undone steps that can be redone now


@dataclass(frozen=True)
class ChangedRegion(Body):
    """Frame header of a prompt's or an undo's reply: the box that changed (the payload is its packed mask),
    and the session's state after the call."""

    changed: bool
    revision: int
    prompt_count: int
    undo: int
    redo: int
    codec: Codec
    box: Box | None = None
    backend_ms: float | None = None


@dataclass(frozen=True)
class ImageStatus(Body):
    digest: str
    present: bool


@dataclass(frozen=True)
class UploadStatus(Body):
    digest: str
    received: int
    chunk_count: int
    complete: bool


@dataclass(frozen=True)
class Limits(Body):
    """Input limits, checked by the server before anything is allocated and by the client before any work."""

    max_dim: int = 4096  # voxels along one axis
    max_image_voxels: int = 1024**3
    max_image_bytes: int = 4 * 1024**3
    chunk_bytes: int = 16 * 1024**2  # raw bytes per upload chunk the server asks clients to send
    max_body_bytes: int = 24 * 1024**2  # any request body; a compressed chunk may grow a little
    max_prompt_voxels: int = 4 * 1024**2  # the box of one lasso or scribble (a 2048^2 slice): bounds its device time


@dataclass(frozen=True)
class Timeouts(Body):
    idle_s: float  # no real activity (heartbeats do not count)
    liveness_s: float  # no request at all: the client is gone


@dataclass(frozen=True)
class Info(Body):
    server: str
    version: str
    protocol_version: int
    model_id: str
    license: str
    device: str
    capabilities: dict[str, Any]
    codecs: list[str]
    limits: Limits
    timeouts: Timeouts
    sessions: dict[str, int | None]
    versions: dict[str, str]
    auth: bool
