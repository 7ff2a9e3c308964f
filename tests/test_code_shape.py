"""The shape of the code: modules a maintainer can read (issue: no module over 700 lines, no
function over 60 lines in verify/)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "imgsim_index"
MAX_MODULE_LINES = 700
MAX_VERIFY_FUNCTION_LINES = 60


def test_no_module_over_700_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_no_function_in_verify_over_60_lines() -> None:
    long = {}
    for p in (PACKAGE / "verify").glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_VERIFY_FUNCTION_LINES:
                    long[f"{p.name}:{node.name}"] = n
    assert not long, long
