"""Each closed set of values is spelled out in one place only.

The audit action names, disclosure methods, rounding schemes, units, cell statuses and the
questions of performance measures are enums (``audit.actions``, ``policy.vocabulary``,
``disclosure.vocabulary``, ``aggregation.definition``) that the services, the
pydantic models and so the JSON Schema derive from. This test reads every source file of the
service and fails if one of their values is written as a string literal anywhere else, so that
copies cannot come back. (Docstrings may name values; a literal with another meaning that
happens to share the spelling is listed below, with that meaning.)
"""

from __future__ import annotations

import ast
from enum import StrEnum
from pathlib import Path

import pytest

from aggregation.definition import Question
from audit.actions import AuditAction
from disclosure.vocabulary import CellStatus, Unit
from policy.vocabulary import (
    DisclosureMethod,
    FieldRole,
    FieldType,
    OrganizationKind,
    RoundingScheme,
    is_steward,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "core",
    "identity",
    "agreements",
    "policy",
    "records",
    "results",
    "aggregation",
    "disclosure",
    "audit",
    "api",
    "cli",
    "demo",
)

# Each checked set, the one file that spells its values, and the values it checks (the others
# are everyday words used in other senses: RoundingScheme.NONE is "none", Unit.COUNT "count").
CHECKED: tuple[tuple[type[StrEnum], str, frozenset[str]], ...] = (
    (AuditAction, "audit/actions.py", frozenset(AuditAction)),
    (DisclosureMethod, "policy/vocabulary.py", frozenset(DisclosureMethod)),
    (
        RoundingScheme,
        "policy/vocabulary.py",
        frozenset({RoundingScheme.BASE5, RoundingScheme.MIDPOINT6}),
    ),
    (Unit, "disclosure/vocabulary.py", frozenset({Unit.PERCENT, Unit.RATE_PER_1000})),
    (CellStatus, "disclosure/vocabulary.py", frozenset(CellStatus)),
    (Question, "aggregation/definition.py", frozenset(Question)),
)

# (file, literal): the same spelling with another meaning.
OTHER_MEANINGS = {
    # phases of the protection's timing, and why an attacker's bound is held
    ("disclosure/protection.py", "primary"),
    ("disclosure/protection.py", "secondary"),
    # a parameter of a differentially private release: the thresholds of low reliability
    ("disclosure/dp.py", "low_reliability"),
    # the role of an indicator towards a result: its headline measure, or one for context
    ("results/vocabulary.py", "primary"),
    ("results/vocabulary.py", "secondary"),
}


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _literals(path: Path) -> list[tuple[int, str]]:
    """The string literals of a module, docstrings excepted (f-string parts included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize(("enum", "home", "values"), CHECKED, ids=[c[0].__name__ for c in CHECKED])
def test_values_are_spelled_in_one_place(
    enum: type[StrEnum], home: str, values: frozenset[str]
) -> None:
    copies = []
    for path in _sources():
        name = path.relative_to(ROOT).as_posix()
        if name == home:
            continue
        for line, value in _literals(path):
            if value in values and (name, value) not in OTHER_MEANINGS:
                copies.append(f"{name}:{line}: {value!r}")
    assert not copies, f"spell these as {enum.__name__} members ({home}):\n" + "\n".join(copies)


def test_the_scan_sees_the_sources() -> None:
    # A scan of nothing would pass: check that it reads the one source and finds its values.
    sources = _sources()
    assert ROOT / "audit" / "actions.py" in sources and len(sources) > 50
    spelled = {v for _, v in _literals(ROOT / "audit" / "actions.py")}
    assert frozenset(AuditAction) <= spelled


def test_the_enums_keep_their_stored_values() -> None:
    # These strings are stored (events, releases, agreements) and published in the JSON Schema.
    assert [m.value for m in DisclosureMethod] == ["suppression", "differential_privacy"]
    assert [m.value for m in RoundingScheme] == ["none", "base5", "midpoint6"]
    assert [m.value for m in FieldRole] == ["identifier", "dimension", "measure", "attribute"]
    assert [m.value for m in FieldType] == [
        "string",
        "integer",
        "number",
        "boolean",
        "date",
        "year",
    ]
    assert [m.value for m in Unit] == ["percent", "rate_per_1000", "count", "mean"]
    assert [m.value for m in Question] == ["how_much", "how_well", "better_off"]
    assert len(set(AuditAction)) == len(AuditAction) and all("." in a for a in AuditAction)


def test_the_steward_rule() -> None:
    assert is_steward(OrganizationKind.BACKBONE) and is_steward("auditor")
    assert not is_steward(OrganizationKind.PARTNER) and not is_steward("")
