"""Evaluation of one ODRL-style constraint against the attributes of a request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from policy.model import Constraint, ConstraintValue
from policy.vocabulary import GEOGRAPHY_RANK, PURPOSES

_MISSING = object()


def purpose_lineage(purpose: str) -> frozenset[str]:
    """A purpose and every broader purpose above it: a narrower purpose satisfies a broader one."""
    seen = {purpose}
    current: str | None = purpose
    while current is not None:
        current = PURPOSES.get(current)
        if current is None or current in seen:
            break
        seen.add(current)
    return frozenset(seen)


def _as_set(value: Any) -> frozenset[Any]:
    if isinstance(value, frozenset | set | tuple | list):
        return frozenset(value)
    return frozenset({value})


def _ordinal(left: str, value: Any) -> Any:
    if left == "spatialGranularity":
        return GEOGRAPHY_RANK.get(str(value), -1)
    return value


def satisfied(constraint: Constraint, actual: Any) -> bool:
    """True if ``actual`` (the request's value of the left operand) satisfies the constraint.

    A missing actual value never satisfies a constraint: a rule that restricts purpose cannot be
    met by a request that does not state one.
    """
    if actual is None or actual is _MISSING:
        return False
    op, right, left = constraint.operator, constraint.right, constraint.left
    if left == "purpose":
        lineage = purpose_lineage(str(actual))
        rights = _as_set(right)
        if op in ("eq", "isAnyOf", "isPartOf"):
            return bool(lineage & rights)
        if op in ("neq", "isNoneOf"):
            return not (lineage & rights)
        return False
    if op in ("isAnyOf", "isAllOf", "isNoneOf", "isPartOf"):
        actual_set, right_set = _as_set(actual), _as_set(right)
        if op == "isAnyOf":
            return bool(actual_set & right_set)
        if op == "isAllOf":
            return right_set <= actual_set
        if op == "isNoneOf":
            return not (actual_set & right_set)
        return actual_set <= right_set
    a, r = _ordinal(left, actual), _ordinal(left, right)
    try:
        if op == "eq":
            return bool(a == r)
        if op == "neq":
            return bool(a != r)
        if op == "lt":
            return bool(a < r)
        if op == "lteq":
            return bool(a <= r)
        if op == "gt":
            return bool(a > r)
        if op == "gteq":
            return bool(a >= r)
    except TypeError:
        return False
    return False


def show(value: Any) -> Any:
    """A JSON-friendly rendering of an expected or actual value for a decision's reasons."""
    if value is None or value is _MISSING:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset | set | tuple | list):
        return sorted(str(v) for v in value)
    return value


def render_expected(constraint: Constraint) -> ConstraintValue | list[str]:
    right = constraint.right
    if isinstance(right, tuple):
        return sorted(str(v) for v in right)
    if isinstance(right, datetime):
        return right.isoformat()
    return right
