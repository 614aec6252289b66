"""The house's layers: no import circle among drlrun's modules (function-level imports count),
and the floor modules import nothing above them. Read from the source with ``ast``, so a new
module is checked the moment it exists."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "drlrun"

# The floor: what everything else may import. Each may import only the ones listed with it.
FLOOR = {"drlrun.errors": set(), "drlrun.agent": {"drlrun.errors"}, "drlrun.config": {"drlrun.errors"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The drlrun modules ``path`` imports, anywhere in it (``from a.b import c`` counts a.b, and
    a.b.c where that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found & modules if m != name and not m.startswith(name + ".")}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) for name, path in files.items()}


def test_no_import_circle_in_drlrun():
    graph = import_graph()
    assert len(graph) > 40  # (the walk found the package)
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")


def test_the_floor_imports_nothing_above_it():
    graph = import_graph()
    for module, allowed in FLOOR.items():
        assert graph[module] <= allowed, f"{module} imports {sorted(graph[module] - allowed)}"


def test_a_circle_is_found(tmp_path, monkeypatch):
    """The check itself: two modules importing each other, one of them inside a function."""
    fake = tmp_path / "drlrun"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "a.py").write_text("from drlrun import b\n")
    (fake / "b.py").write_text("def f():\n    from drlrun.a import x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
