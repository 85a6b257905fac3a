"""The layout stays readable (issue 12): no module of a feature over 500
lines, no function over 80 anywhere in the product's packages (C and
vendored code aside). A module or function that grows past these splits by
use case; see docs/architecture.md for how the slices are cut."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "features", "api", "worker")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    return [
        p for top in PACKAGES for p in sorted((ROOT / top).rglob("*.py")) if "vendor" not in p.parts
    ]


def test_no_feature_module_is_over_500_lines() -> None:
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in _sources()
        if p.relative_to(ROOT).parts[0] == "features"
        and (n := p.read_text().count("\n")) > MAX_MODULE_LINES
    ]
    assert long == []


def test_no_function_is_over_80_lines() -> None:
    long = []
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert long == []
