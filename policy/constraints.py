"""Rendering of constraint values for a decision's reasons.

(A constraint's predicate is compiled with the constraint, in :mod:`policy.model`.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def show(value: Any) -> Any:
    """A JSON-friendly rendering of an expected or actual value for a decision's reasons."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset | set | tuple | list):
        return sorted(str(v) for v in value)
    return value
