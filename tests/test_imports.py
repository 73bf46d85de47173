"""No import cycles among gateway's modules: every import counts, also one inside a function."""

from __future__ import annotations

import ast
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "gateway"
KNOWN: set[frozenset[str]] = set()
"""Cycles being taken apart; empty: there are none."""


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The gateway modules ``name`` imports (a package's own submodules aside: it is their parent)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets.update([base, *(f"{base}.{alias.name}" for alias in node.names)])
    found = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            found.add(target)
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:``: imports for the type checker only never run,
    so they make no import cycle (lazy imports inside functions do run, and count)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            pending.extend(node.orelse)
            continue
        nodes.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def cycles() -> set[frozenset[str]]:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    found: set[frozenset[str]] = set()
    while True:
        try:
            TopologicalSorter(graph).prepare()
            return found
        except CycleError as exc:
            cycle = exc.args[1]
            found.add(frozenset(cycle))
            graph[cycle[1]].discard(cycle[0])  # cut one edge of it, look for the next


def test_no_import_cycles() -> None:
    assert cycles() <= KNOWN


def test_a_lazy_import_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "gateway"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from gateway.b import X\n")
    (package / "b.py").write_text("X = 1\ndef f():\n    from gateway import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", package)
    assert cycles() == {frozenset({"gateway.a", "gateway.b"})}


def test_an_import_for_the_type_checker_only_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "gateway"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from gateway.b import X\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nX = 1\nif TYPE_CHECKING:\n    from gateway import a\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", package)
    assert cycles() == set()


def test_test_doubles_do_not_ship_with_the_package() -> None:
    """The fakes and the Redis launchers live in tests/fakes, outside the wheel, and nothing in the
    package imports them."""
    assert not (ROOT / "testing").exists()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(name.split(".")[0] == "tests" for name in names), path
