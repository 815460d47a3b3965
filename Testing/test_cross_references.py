"""Docstrings that point at a module (``:mod:`..x.y```) point at one that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOTS = (Path(__file__).parents[1] / "Backends", Path(__file__).parents[1] / "SlicerNNInteractive")
REFERENCE = re.compile(r":mod:`~?([\w.]+)`")


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if path.name == "__init__.py" else parts), path.name == "__init__.py"


def resolve(reference: str, module: str, is_package: bool) -> str:
    """The absolute name of a relative reference made from ``module``, as Python resolves relative imports."""
    if not reference.startswith("."):
        return reference
    level = len(reference) - len(reference.lstrip("."))
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + [reference.lstrip(".")] if reference.lstrip(".") else base)


def exists(name: str) -> bool:
    relative = Path(*name.split("."))
    return any((root / relative).with_suffix(".py").is_file() or (root / relative / "__init__.py").is_file()
               for root in ROOTS)


def test_every_module_reference_in_a_docstring_exists():
    broken = []
    for root in ROOTS:
        for path in root.rglob("*.py"):
            module, is_package = module_name(path, root)
            for reference in REFERENCE.findall(path.read_text()):
                name = resolve(reference, module, is_package)
                if name.split(".")[0] in ("nninteractive_slicer", "SlicerNNInteractiveLib") and not exists(name):
                    broken.append(f"{path.relative_to(root.parent)}: {reference}")
    assert not broken, "\n".join(broken)
