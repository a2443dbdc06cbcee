"""The code's shape: model/ knows no camera, and no two modules of model/ import each other."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_model_never_imports_the_live_pipeline():
    for path in sorted((REPO / "model").glob("*.py")):
        live = sorted(name for name in _imports(path) if name == "realtime" or name.startswith("realtime."))
        assert not live, f"{path.name} imports {live}"


def test_no_two_model_modules_import_each_other():
    graph = {path.stem: {name.split(".")[1] for name in _imports(path) if name.startswith("model.")}
             for path in (REPO / "model").glob("*.py")}
    cycles = sorted((a, b) for a, deps in graph.items() for b in deps if a < b and a in graph.get(b, set()))
    assert not cycles, cycles
