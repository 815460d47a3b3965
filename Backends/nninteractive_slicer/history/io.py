"""A history as JSON: the documented file format (``schema.json``, ``docs/history.md``), read strictly.

Reading checks the format name and version before anything else: a file of another version gets an
error that says which versions this package reads, never a guess. Every field is then checked, so a
file that loads is one that replays; an error names the field (``steps[3].box``) and what is wrong.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..backends.registry import current_kind
from ..interface import IMAGE_DTYPES, BBox, Box, Lasso, Point, Prompt, Scribble, box_shape
from .codec import DIGEST_PREFIX, decode_mask, encode_mask, mask_digest
from .model import STEP_OPS, History, ImageIdentity, ModelIdentity, Step, StepResult

FORMAT = "nninteractive-slicer-history"
VERSION = 1
# Older versions this package still reads, each with the function that brings it to the current one.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
RAS_DECIMALS = 4  # world coordinates are for people and other tools; voxel indices are what replays


class HistoryFormatError(ValueError):
    """The text is not a history this package can read; the message names the field and the problem."""


def schema() -> dict[str, Any]:
    """The JSON Schema of the current version (package data)."""
    return json.loads(resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8"))


# -- writing -----------------------------------------------------------------------------------------
def to_dict(history: History) -> dict[str, Any]:
    image = history.image
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "written_by": f"nninteractive-slicer {__version__}",
        "name": history.name,
        "image": {
            "digest": image.digest,
            "size": list(image.shape[::-1]),
            "dtype": image.dtype,
            "spacing": list(image.spacing[::-1]),
            "ijk_to_ras": (image.index_to_ras @ _REVERSE).tolist(),
        },
        "model": {"id": history.model.id, "version": history.model.version,
                  "checkpoint_digest": history.model.checkpoint_digest},
        "backend": history.backend,
        "initial_mask": None if history.initial_mask is None else _mask_dict(history.initial_mask),
        "steps": [_step_dict(step, image) for step in history.steps],
    }
    return data


def dumps(history: History) -> str:
    return json.dumps(to_dict(history), separators=(",", ":"))


def save(history: History, path: str | os.PathLike) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(dumps(history), encoding="utf-8")
    os.replace(partial, path)


# Steps never change once recorded: Slicer writes the history after every step, so each is encoded once.
_ENCODED: weakref.WeakKeyDictionary[Step, dict[str, Any]] = weakref.WeakKeyDictionary()


def _step_dict(step: Step, image: ImageIdentity) -> dict[str, Any]:
    encoded = _ENCODED.get(step)
    if encoded is None:
        encoded = _ENCODED[step] = _encode_step(step, image)
    return encoded


def _encode_step(step: Step, image: ImageIdentity) -> dict[str, Any]:
    data: dict[str, Any] = {"op": step.op}
    prompt = step.prompt
    if step.op == "prompt" and prompt is not None:
        data.update(kind=prompt.kind, positive=bool(prompt.positive))
        if isinstance(prompt, Point):
            data["ijk"] = list(prompt.coord[::-1])
            data["ras"] = _ras(image, prompt.coord)
        else:
            data["box"] = _box_out(prompt.box)
            data["ras"] = [_ras(image, [lo for lo, _ in prompt.box]), _ras(image, [hi - 1 for _, hi in prompt.box])]
            if isinstance(prompt, (Scribble, Lasso)):
                data["bits"] = encode_mask(prompt.mask)
    if step.op == "set_mask" and step.mask is not None:
        data["mask"] = _mask_dict(step.mask)
    result = step.result
    data["result"] = {
        "mask_digest": result.mask_digest,
        "box": None if result.box is None else _box_out(result.box),
        "bits": None if result.patch is None else encode_mask(result.patch),
    }
    return data


def _mask_dict(mask: np.ndarray) -> dict[str, str]:
    return {"digest": mask_digest(mask), "bits": encode_mask(mask)}


def _ras(image: ImageIdentity, index: Any) -> list[float]:
    return [round(v, RAS_DECIMALS) for v in image.to_ras(np.asarray(index, dtype=float))]


def _box_out(box: Box) -> list[list[int]]:
    return [list(pair) for pair in box[::-1]]


# (k, j, i, 1) <-> (i, j, k, 1): the permutation is its own inverse.
_REVERSE = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


# -- reading ---------------------------------------------------------------------------------------
def loads(text: str, source: str = "history") -> History:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(f"{source}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).") from exc
    return from_dict(data, source)


def load(path: str | os.PathLike) -> History:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryFormatError(f"{path}: cannot be read ({exc}).") from exc
    return loads(text, str(path))


def from_dict(data: Any, source: str = "history") -> History:
    reader = _Reader(source)
    return reader.history(reader.upgraded(data))


class _Reader:
    """Checks as it reads; every error names ``source`` and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> HistoryFormatError:
        return HistoryFormatError(f"{self.source}: {where}: {problem}")

    def upgraded(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise self.fail("format", f"this is not an nnInteractive segment history (no \"format\": \"{FORMAT}\").")
        version = data.get("version")
        if version == VERSION:
            return data
        if isinstance(version, int) and not isinstance(version, bool) and version in UPGRADES:
            return UPGRADES[version](data)
        readable = ", ".join(str(v) for v in sorted([*UPGRADES, VERSION]))
        newer = isinstance(version, int) and not isinstance(version, bool) and version > VERSION
        hint = " It was written by a newer nninteractive-slicer: update this one." if newer else ""
        raise self.fail("version", f"version {version!r} cannot be read; this package reads version {readable}.{hint}")

    def history(self, data: dict[str, Any]) -> History:
        self.keys(data, "history", {"format", "version", "image", "model", "backend", "initial_mask", "steps"},
                  {"written_by", "name"})
        image = self.image(data["image"])
        model = self.obj(data["model"], "model")
        self.keys(model, "model", {"id", "version", "checkpoint_digest"})
        history = History(
            image=image,
            model=ModelIdentity(self.string(model["id"], "model.id"),
                                self.optional_string(model["version"], "model.version"),
                                self.optional_string(model["checkpoint_digest"], "model.checkpoint_digest")),
            backend=current_kind(self.string(data["backend"], "backend")),
            initial_mask=None if data["initial_mask"] is None else self.mask(data["initial_mask"], "initial_mask",
                                                                              image.shape),
            name=self.string(data.get("name", ""), "name"),
        )
        steps = data["steps"]
        if not isinstance(steps, list):
            raise self.fail("steps", "must be a list.")
        history.steps = [self.step(step, f"steps[{n}]", image.shape) for n, step in enumerate(steps)]
        return history

    def image(self, value: Any) -> ImageIdentity:
        data = self.obj(value, "image")
        self.keys(data, "image", {"digest", "size", "dtype", "spacing", "ijk_to_ras"})
        size = self.ints(data["size"], "image.size", minimum=1)
        if data["dtype"] not in IMAGE_DTYPES:
            raise self.fail("image.dtype", f"{data['dtype']!r} is not one of {', '.join(IMAGE_DTYPES)}.")
        spacing = self.numbers(data["spacing"], "image.spacing", 3)
        if min(spacing) <= 0:
            raise self.fail("image.spacing", f"must be positive, got {spacing}.")
        rows = data["ijk_to_ras"]
        if not isinstance(rows, list) or len(rows) != 4:
            raise self.fail("image.ijk_to_ras", "must be a 4x4 matrix (4 rows of 4 numbers).")
        matrix = np.array([self.numbers(r, f"image.ijk_to_ras[{n}]", 4) for n, r in enumerate(rows)])
        if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
            raise self.fail("image.ijk_to_ras", "is singular: it does not place voxels in space.")
        return ImageIdentity(self.digest(data["digest"], "image.digest"), (size[2], size[1], size[0]), data["dtype"],
                             (spacing[2], spacing[1], spacing[0]), matrix @ _REVERSE)

    def step(self, value: Any, where: str, shape: tuple[int, int, int]) -> Step:
        data = self.obj(value, where)
        op = data.get("op")
        if op not in STEP_OPS:
            raise self.fail(f"{where}.op", f"{op!r} is not one of {', '.join(STEP_OPS)}.")
        prompt, mask = None, None
        if op == "prompt":
            prompt = self.prompt(data, where, shape)
        elif op == "set_mask":
            self.keys(data, where, {"op", "result", "mask"})
            mask = self.mask(data["mask"], f"{where}.mask", shape)
        else:
            self.keys(data, where, {"op", "result"})
        result = self.obj(data["result"], f"{where}.result")
        self.keys(result, f"{where}.result", {"mask_digest", "box", "bits"})
        box = None if result["box"] is None else self.box(result["box"], f"{where}.result.box", shape)
        if (box is None) != (result["bits"] is None):
            raise self.fail(f"{where}.result", "box and bits must both be given or both be null.")
        patch = None if box is None else self.bits(result["bits"], f"{where}.result.bits", box_shape(box))
        return Step(op, StepResult(self.digest(result["mask_digest"], f"{where}.result.mask_digest"), box, patch),
                    prompt, mask)

    def prompt(self, data: dict[str, Any], where: str, shape: tuple[int, int, int]) -> Prompt:
        kind = data.get("kind")
        required = {"point": {"ijk"}, "bbox": {"box"}, "scribble": {"box", "bits"}, "lasso": {"box", "bits"}}
        if kind not in required:
            raise self.fail(f"{where}.kind", f"{kind!r} is not one of {', '.join(required)}.")
        self.keys(data, where, {"op", "result", "kind", "positive", "ras", *required[kind]})
        positive = data["positive"]
        if not isinstance(positive, bool):
            raise self.fail(f"{where}.positive", f"must be true or false, got {positive!r}.")
        if kind == "point":
            ijk = self.ints(data["ijk"], f"{where}.ijk", minimum=0)
            coord = tuple(ijk[::-1])
            if not all(c < n for c, n in zip(coord, shape)):
                raise self.fail(f"{where}.ijk", f"{ijk} lies outside the image.")
            return Point(coord, positive)  # type: ignore[arg-type]
        box = self.box(data["box"], f"{where}.box", shape)
        if kind == "bbox":
            return BBox(box, positive)
        crop = self.bits(data["bits"], f"{where}.bits", box_shape(box))
        return (Scribble if kind == "scribble" else Lasso)(crop, box, positive)

    # -- small checks -------------------------------------------------------------------------
    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be an object, got {type(value).__name__}.")
        return value

    def keys(self, data: dict[str, Any], where: str, required: set[str],
             optional: AbstractSet[str] = frozenset()) -> None:
        missing = sorted(required - data.keys())
        if missing:
            raise self.fail(where, f"lacks {', '.join(missing)}.")
        unknown = sorted(data.keys() - required - optional)
        if unknown:
            raise self.fail(where, f"has unknown field(s) {', '.join(unknown)}.")

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"must be text, got {value!r}.")
        return value

    def optional_string(self, value: Any, where: str) -> str | None:
        return None if value is None else self.string(value, where)

    def digest(self, value: Any, where: str) -> str:
        text = self.string(value, where)
        hex_part = text[len(DIGEST_PREFIX):]
        if not text.startswith(DIGEST_PREFIX) or len(hex_part) != 64 or any(c not in "0123456789abcdef"
                                                                           for c in hex_part):
            raise self.fail(where, f"must be 'sha256:' and 64 hex digits, got {text!r}.")
        return text

    def numbers(self, value: Any, where: str, count: int) -> list[float]:
        if (not isinstance(value, list) or len(value) != count
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                or not all(np.isfinite(v) for v in value)):
            raise self.fail(where, f"must be {count} finite numbers, got {value!r}.")
        return [float(v) for v in value]

    def ints(self, value: Any, where: str, minimum: int) -> list[int]:
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)):
            raise self.fail(where, f"must be 3 whole numbers of at least {minimum}, got {value!r}.")
        return value

    def box(self, value: Any, where: str, shape: tuple[int, int, int]) -> Box:
        if not isinstance(value, list) or len(value) != 3 or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in p)
                for p in value):
            raise self.fail(where, f"must be 3 [start, end) voxel ranges, got {value!r}.")
        box = tuple((lo, hi) for lo, hi in value[::-1])
        if not all(0 <= lo < hi <= n for (lo, hi), n in zip(box, shape)):
            raise self.fail(where, f"{value} does not lie inside the image of size {list(shape[::-1])}.")
        return box  # type: ignore[return-value]

    def bits(self, value: Any, where: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            return decode_mask(self.string(value, where), shape)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from exc

    def mask(self, value: Any, where: str, shape: tuple[int, int, int]) -> np.ndarray:
        data = self.obj(value, where)
        self.keys(data, where, {"digest", "bits"})
        mask = self.bits(data["bits"], f"{where}.bits", shape)
        if mask_digest(mask) != self.digest(data["digest"], f"{where}.digest"):
            raise self.fail(where, "its bits do not match its digest: the file was changed or damaged.")
        return mask
