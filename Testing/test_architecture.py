"""Rules of the package's shape that a reader relies on: imports go one way, and one place knows the backends."""

from __future__ import annotations

import ast
from pathlib import Path

from nninteractive_slicer.backends.registry import backend_classes

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "Backends" / "nninteractive_slicer"
LIB = REPO / "SlicerNNInteractive"
# The registry and the backend classes are the only places that know which backends exist.
KNOWERS = {PACKAGE / "backends" / f"{name}.py" for name in ("registry", "local", "slicer_server", "official")}


def module_of(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if path.name == "__init__.py" else parts), path.name == "__init__.py"


def imported(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at any depth of its code (lazy imports count too)."""
    module, is_package = module_of(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules and name != module}
    return found


def test_no_import_cycle_among_the_package_modules():
    paths = {module_of(p)[0]: p for p in PACKAGE.rglob("*.py")}
    graph = {module: imported(path, set(paths)) for module, path in paths.items()}
    # A package imports what its __init__ imports, not its submodules: drop the edge package -> its own module.
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep] if dep in path else [module, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_backend_kind_is_written_outside_the_registry_and_the_backend_classes():
    kinds = set(backend_classes())
    found = []
    hosts = [*(LIB / "SlicerNNInteractiveLib").rglob("*.py"), LIB / "SlicerNNInteractive.py"]  # tests may name kinds
    for path in [*PACKAGE.rglob("*.py"), *hosts]:
        if path in KNOWERS:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        keywords = {id(k.value) for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg == "address"}  # Ray's
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in kinds and id(node) not in docstrings | keywords:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


def test_nothing_slicer_runs_imports_a_folder_the_module_does_not_ship():
    from test_slicer_packaging import unshipped_folders

    unshipped = tuple(f"nninteractive_slicer.{folder}" for folder in unshipped_folders())
    modules = {module_of(p)[0] for p in PACKAGE.rglob("*.py")}
    shipped = [p for p in PACKAGE.rglob("*.py") if not module_of(p)[0].startswith(unshipped)]
    lib = [*(LIB / "SlicerNNInteractiveLib").rglob("*.py"), LIB / "SlicerNNInteractive.py"]
    reached = [f"{path.relative_to(REPO)} imports {name}" for path in shipped + lib
               for name in (imported(path, modules) if path in shipped else absolute_imports(path, modules))
               if name.startswith(unshipped)]
    assert not reached, "\n".join(reached)


def absolute_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that a file outside the package imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {n for n in [node.module] + [f"{node.module}.{a.name}" for a in node.names] if n in modules}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
    return found
