"""disclosure/ is pure: no database, clock, network or framework, and nothing of the service
(what reads records, stores releases and charges the budget is :mod:`aggregation`)."""

from __future__ import annotations

import ast
from pathlib import Path

import disclosure

# The standard library it may use, the numerical libraries, and the pure parts of Backbone it
# builds on (the agreement's categories and filters, the policy model, domain errors).
ALLOWED = {
    "__future__",
    "collections",
    "collections.abc",
    "dataclasses",
    "enum",
    "functools",
    "importlib.metadata",
    "itertools",
    "math",
    "typing",
    "numpy",
    "scipy",
    "scipy.optimize",
    "scipy.sparse",
    "scipy.sparse.csgraph",
    "scipy.stats",
    "polars",
    "highspy",
    "opendp.prelude",
    "opendp.extras.polars",
    "agreements.categories",
    "agreements.expressions",
    "core.errors",
    "policy.model",
    "policy.vocabulary",
}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "process_time"}


def _modules() -> list[Path]:
    return sorted(Path(disclosure.__file__).parent.glob("*.py"))


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_the_engine_imports_nothing_impure() -> None:
    for path in _modules():
        for name in _imports(path):
            assert name in ALLOWED or name == "disclosure" or name.startswith("disclosure."), (
                f"{path.name} imports {name}"
            )


def test_the_engine_never_reads_the_clock() -> None:
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in CLOCK_CALLS, f"{path.name} calls .{node.func.attr}()"


def test_the_check_sees_an_impure_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import sqlalchemy\nfrom records import vault\n")
    assert [n for n in _imports(module) if n not in ALLOWED] == ["sqlalchemy", "records"]


def test_only_tests_inject_noise() -> None:
    # disclosure.dp.release(noise=...) is the tests' seam: no code of the service passes it.
    root = Path(disclosure.__file__).parent.parent
    packages = ["api", "cli", "demo", "aggregation", "disclosure", "records", "agreements"]
    for path in sorted(p for name in packages for p in (root / name).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                assert "noise" not in {k.arg for k in node.keywords}, f"{path} passes noise="
