"""Evaluation of one ODRL-style constraint against the attributes of a request."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from policy.model import Constraint
from policy.vocabulary import GEOGRAPHY_RANK, PURPOSES


@lru_cache(maxsize=1024)
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


def _ordinal(left: str, value: Any) -> Any:
    if left == "spatialGranularity":
        return GEOGRAPHY_RANK.get(str(value), -1)
    return value


_SET_OPERATORS = frozenset({"isAnyOf", "isAllOf", "isNoneOf", "isPartOf"})


def satisfied(constraint: Constraint, actual: Any) -> bool:
    """True if ``actual`` (the request's value of the left operand) satisfies the constraint.

    A missing actual value never satisfies a constraint: a rule that restricts purpose cannot be
    met by a request that does not state one. (The predicate is compiled with the constraint.)
    """
    return constraint.check(actual)


def show(value: Any) -> Any:
    """A JSON-friendly rendering of an expected or actual value for a decision's reasons."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset | set | tuple | list):
        return sorted(str(v) for v in value)
    return value


def render_expected(constraint: Constraint) -> Any:
    return constraint.expected
