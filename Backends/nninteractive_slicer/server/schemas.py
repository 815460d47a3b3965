"""Request and response bodies of the API, strict: a string is never taken for a number, nor 1 for true.

Frame headers (binary bodies, see :mod:`..protocol.wire`) are validated with the same models.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

Codec = Literal["zstd", "lz4", "zlib", "none"]
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 content address of an image")]
Coord = Annotated[list[StrictInt], Field(min_length=3, max_length=3)]
Range = Annotated[list[StrictInt], Field(min_length=2, max_length=2)]
BoxList = Annotated[list[Range], Field(min_length=3, max_length=3, description="[start, end) per axis")]
Spacing = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PointPrompt(Strict):
    kind: Literal["point"]
    coord: Coord
    positive: StrictBool = True


class BBoxPrompt(Strict):
    kind: Literal["bbox"]
    box: BoxList
    positive: StrictBool = True


JsonPrompt = Annotated[PointPrompt | BBoxPrompt, Field(discriminator="kind")]


class CropHeader(Strict):
    """Frame header of a scribble or lasso: the payload is the packed crop covering ``box``."""

    kind: Literal["scribble", "lasso"]
    box: BoxList
    positive: StrictBool = True
    codec: Codec


class MaskHeader(Strict):
    """Frame header of a starting mask: the payload is the packed full-size mask."""

    codec: Codec
    shape: Coord


class ChunkHeader(Strict):
    """Frame header of one image chunk: elements [index * chunk_elements, ...) of the flattened image."""

    shape: Coord
    dtype: str = Field(max_length=16)
    spacing: Annotated[list[Spacing], Field(min_length=3, max_length=3)]
    codec: Codec
    chunk_elements: StrictInt = Field(gt=0)


class SetImageBody(Strict):
    digest: Digest


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable code, e.g. session_unknown, invalid_input, busy")
    detail: str = Field(description="what went wrong, for the person at the keyboard")


class Health(BaseModel):
    status: Literal["ok"]
    server: str
    version: str
    protocol_version: int


class SessionState(BaseModel):
    session_id: str
    revision: int
    image_digest: str | None
    shape: list[int] | None
    prompt_count: int
    can_undo: bool
    undo: int = Field(description="steps that can be undone now")
    redo: int = Field(description="undone steps that can be redone now")


class Closed(BaseModel):
    closed: bool


class ImageStatus(BaseModel):
    digest: str
    present: bool


class UploadStatus(BaseModel):
    digest: str
    received: int
    chunk_count: int
    complete: bool


class Info(BaseModel):
    server: str
    version: str
    protocol_version: int
    model_id: str
    license: str
    device: str
    capabilities: dict
    codecs: list[str]
    limits: dict[str, int]
    timeouts: dict[str, float]
    sessions: dict[str, int | None]
    versions: dict[str, str]
    auth: bool
