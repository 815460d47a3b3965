"""Prompt files for ``nninteractive-slicer segment``: read, checked against the image, turned into voxel prompts.

Everything is checked before a backend is made, so a mistake costs no model time. An error names the
file, the line, the object and the prompt. The format (see the README)::

    {"space": "ras",                       # or "ijk": voxel indices (i, j, k), as Slicer shows them
     "objects": [
       {"label": 1, "name": "tumour", "prompts": [
         {"type": "point", "at": [12.5, -30.0, 41.0]},
         {"type": "box", "corners": [[0, -40, 41], [25, -20, 41]], "positive": false},
         {"type": "scribble", "points": [[...], [...], ...]},
         {"type": "lasso", "points": [[...], [...], [...], ...]}]}]}

A box, scribble or lasso lies on one slice: its points share one voxel index on some axis.
"""

from __future__ import annotations

import bisect
import json
import json.scanner
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..interface import BBox, Lasso, Point, Prompt, Scribble
from ..raster import dilate, draw_polyline, fill_polygon
from .images import Volume

SPACES = ("ras", "ijk")
PROMPT_TYPES = ("point", "box", "scribble", "lasso")
MAX_LABEL = 65535
SCRIBBLE_WIDTH = 2  # voxels, nnInteractive's preferred scribble thickness


class PromptFileError(ValueError):
    """The prompt file is not usable; the message names file, line, object and prompt."""


@dataclass
class ObjectPrompts:
    """One object to segment: its label value in the output, and its voxel prompts in order."""

    label: int
    name: str
    prompts: list[Prompt] = field(default_factory=list)


class _Located(dict):
    """A JSON object that knows the line it starts on."""

    line = 0


def parse_json_with_lines(text: str) -> Any:
    """``json.loads`` whose objects remember their line (the pure-Python scanner hands us positions)."""
    starts = [0] + [n + 1 for n, c in enumerate(text) if c == "\n"]
    decoder = json.JSONDecoder()
    parse_object = decoder.parse_object

    def located(s_and_end: tuple[str, int], *args: Any) -> tuple[_Located, int]:
        obj, end = parse_object(s_and_end, *args)
        out = _Located(obj)
        out.line = bisect.bisect_right(starts, s_and_end[1] - 1)
        return out, end

    decoder.parse_object = located  # type: ignore[method-assign]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    return decoder.decode(text)


def load_prompts(path: str | os.PathLike, volume: Volume) -> list[ObjectPrompts]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptFileError(f"{path}: cannot be read ({exc}).") from exc
    return parse_prompts(text, volume, str(path))


def parse_prompts(text: str, volume: Volume, source: str = "prompts") -> list[ObjectPrompts]:
    try:
        data = parse_json_with_lines(text)
    except json.JSONDecodeError as exc:
        raise PromptFileError(f"{source}, line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}).") from exc
    return _FileReader(source, volume).read(data)


class _FileReader:
    def __init__(self, source: str, volume: Volume) -> None:
        self.source, self.volume = source, volume
        self.shape = volume.array.shape

    def fail(self, node: Any, where: str, problem: str) -> PromptFileError:
        line = f", line {node.line}" if isinstance(node, _Located) else ""
        return PromptFileError(f"{self.source}{line}{', ' + where if where else ''}: {problem}")

    def read(self, data: Any) -> list[ObjectPrompts]:
        if not isinstance(data, dict):
            raise self.fail(data, "", "the file must hold one JSON object with \"space\" and \"objects\".")
        self.known(data, "", {"space", "objects"}, {"space", "objects"})
        space = data["space"]
        if space not in SPACES:
            raise self.fail(data, "space", f"{space!r} is not one of {', '.join(SPACES)} "
                            "(world RAS millimetres, or voxel indices i, j, k).")
        objects = data["objects"]
        if not isinstance(objects, list) or not objects:
            raise self.fail(data, "objects", "must be a non-empty list of objects.")
        out: list[ObjectPrompts] = []
        labels: dict[int, int] = {}
        for n, obj in enumerate(objects, 1):
            result = self.object(obj, n, space)
            if result.label in labels:
                raise self.fail(obj, f"object {n}", f"label {result.label} is already used by object "
                                f"{labels[result.label]}; give each object its own label value.")
            labels[result.label] = n
            out.append(result)
        return out

    def object(self, obj: Any, n: int, space: str) -> ObjectPrompts:
        where = f"object {n}"
        if not isinstance(obj, dict):
            raise self.fail(obj, where, "must be an object with \"label\" and \"prompts\".")
        self.known(obj, where, {"label", "prompts"}, {"label", "name", "prompts"})
        label = obj["label"]
        if not isinstance(label, int) or isinstance(label, bool) or not 1 <= label <= MAX_LABEL:
            raise self.fail(obj, where, f"label must be a whole number from 1 to {MAX_LABEL}, got {label!r}.")
        name = obj.get("name", f"label {label}")
        if not isinstance(name, str):
            raise self.fail(obj, where, f"name must be text, got {name!r}.")
        where = f"object {n} ({name})"
        prompts = obj["prompts"]
        if not isinstance(prompts, list) or not prompts:
            raise self.fail(obj, where, "prompts must be a non-empty list.")
        return ObjectPrompts(label, name, [self.prompt(p, f"{where}, prompt {m}", space)
                                           for m, p in enumerate(prompts, 1)])

    def prompt(self, p: Any, where: str, space: str) -> Prompt:
        if not isinstance(p, dict):
            raise self.fail(p, where, "must be an object with a \"type\".")
        kind = p.get("type")
        if kind not in PROMPT_TYPES:
            raise self.fail(p, where, f"unknown type {kind!r}; use one of {', '.join(PROMPT_TYPES)}.")
        where = f"{where} ({kind})"
        coords_key = {"point": "at", "box": "corners", "scribble": "points", "lasso": "points"}[kind]
        self.known(p, where, {"type", coords_key}, {"type", "positive", coords_key})
        positive = p.get("positive", True)
        if not isinstance(positive, bool):
            raise self.fail(p, where, f"positive must be true or false, got {positive!r}.")
        if kind == "point":
            index = self.indices(p, where, [p["at"]], space)[0]
            return Point(tuple(int(v) for v in np.rint(index)), positive)  # type: ignore[arg-type]
        points = p[coords_key]
        least = {"box": 2, "scribble": 2, "lasso": 3}[kind]
        if not isinstance(points, list) or len(points) < least or (kind == "box" and len(points) != 2):
            count = "exactly 2 corners" if kind == "box" else f"at least {least} points"
            raise self.fail(p, where, f"{coords_key} must be a list of {count}.")
        index = np.rint(self.indices(p, where, points, space)).astype(int)
        axis = self.slice_axis(p, where, index)
        if kind == "box":
            lo, hi = index.min(axis=0), index.max(axis=0) + 1
            return BBox(tuple((int(a), int(b)) for a, b in zip(lo, hi)), positive)  # type: ignore[arg-type]
        return self.crop(kind, index, axis, positive)

    def crop(self, kind: str, index: np.ndarray, axis: int, positive: bool) -> Prompt:
        plane = [a for a in range(3) if a != axis]
        shape2d = (self.shape[plane[0]], self.shape[plane[1]])
        points2d = index[:, plane].astype(float)
        if kind == "lasso":
            drawn = fill_polygon(points2d, shape2d)
        else:
            drawn = dilate(draw_polyline(points2d, shape2d), (SCRIBBLE_WIDTH, SCRIBBLE_WIDTH))
        rows, cols = np.nonzero(drawn)
        lo = [0, 0, 0]
        hi = [0, 0, 0]
        lo[axis], hi[axis] = int(index[0, axis]), int(index[0, axis]) + 1
        lo[plane[0]], hi[plane[0]] = int(rows.min()), int(rows.max()) + 1
        lo[plane[1]], hi[plane[1]] = int(cols.min()), int(cols.max()) + 1
        crop2d = drawn[lo[plane[0]]:hi[plane[0]], lo[plane[1]]:hi[plane[1]]]
        crop = np.expand_dims(crop2d.astype(np.uint8), axis)
        box = tuple(zip(lo, hi))
        return (Lasso if kind == "lasso" else Scribble)(crop, box, positive)  # type: ignore[arg-type]

    def indices(self, p: Any, where: str, points: list[Any], space: str) -> np.ndarray:
        """Continuous (k, j, i) indices of the given points, each inside the image."""
        rows = []
        for point in points:
            if (not isinstance(point, list) or len(point) != 3
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
                    or not np.all(np.isfinite(point))):
                raise self.fail(p, where, f"{point!r} is not three numbers.")
            if space == "ijk" and not all(float(v).is_integer() for v in point):
                raise self.fail(p, where, f"{point} is not a voxel index: in \"ijk\" space give whole numbers.")
            rows.append([float(v) for v in point])
        coords = np.array(rows)
        index = coords[:, ::-1] if space == "ijk" else self.volume.to_index(coords)
        for point, kji in zip(points, index):
            if not all(-0.5 <= c < n - 0.5 for c, n in zip(kji, self.shape)):
                size = list(self.shape[::-1])
                unit = "voxel index" if space == "ijk" else f"RAS point (voxel {np.round(kji[::-1], 1).tolist()})"
                raise self.fail(p, where, f"{unit} {point} lies outside the image of size {size} (i, j, k).")
        return index

    def slice_axis(self, p: Any, where: str, index: np.ndarray) -> int:
        for axis in (0, 1, 2):
            if np.all(index[:, axis] == index[0, axis]):
                return axis
        raise self.fail(p, where, "its points do not lie on one slice: draw it on one voxel plane "
                        "(one voxel index the same for all points).")

    def known(self, node: dict, where: str, required: set[str], allowed: set[str]) -> None:
        missing = sorted(required - node.keys())
        if missing:
            raise self.fail(node, where, f"lacks {', '.join(repr(m) for m in missing)}.")
        unknown = sorted(node.keys() - allowed)
        if unknown:
            raise self.fail(node, where, f"has unknown field(s) {', '.join(repr(u) for u in unknown)} "
                            f"(allowed: {', '.join(sorted(allowed))}).")
