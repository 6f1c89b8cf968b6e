"""policy/ is pure: no database, clock, network or framework, by construction."""

from __future__ import annotations

import ast
from pathlib import Path

import policy

ALLOWED = {
    "__future__",
    "collections",
    "collections.abc",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "itertools",
    "math",
    "operator",
    "re",
    "typing",
}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _modules() -> list[Path]:
    return sorted(Path(policy.__file__).parent.glob("*.py"))


def test_policy_imports_nothing_impure() -> None:
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name in ALLOWED or name == "policy" or name.startswith("policy."), (
                    f"{path.name} imports {name}"
                )


def test_policy_never_reads_the_clock() -> None:
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in CLOCK_CALLS, f"{path.name} calls .{node.func.attr}()"
