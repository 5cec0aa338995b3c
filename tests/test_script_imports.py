"""Benchmarks, scripts and examples are not run by the suite; their polyfuse imports must
still resolve, so a module move cannot silently break them."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(
    p for folder in ("benchmarks", "scripts", "examples") for p in (ROOT / folder).rglob("*.py")
)


def _polyfuse_imports(path: Path) -> list[tuple[int, str, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("polyfuse")
        for alias in node.names
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_polyfuse_imports_resolve(path: Path) -> None:
    missing = []
    for line, module, name in _polyfuse_imports(path):
        target = importlib.import_module(module)
        if not hasattr(target, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"line {line}: from {module} import {name}")
    assert not missing, f"{path.name}: " + "; ".join(missing)


def test_the_files_are_found() -> None:
    assert any(p.parent.name == "benchmarks" for p in FILES)
