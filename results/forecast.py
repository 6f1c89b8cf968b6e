"""The baseline forecast of Results-Based Accountability: where the curve goes "if nothing
changes".

It is a straight-line projection of the trend so far (an ordinary least squares line through
the published actual values), not a model: it knows nothing of causes, seasonality, populations
or uncertainty, and says only where the recent trend would lead if it simply went on. Pure: no
database, clock or framework.

Periods are labels. The labels this module can count in are school years (``2026-27``, the
following one being ``2027-28``; also ``2026-2027``) and years (``2026``). Any other label
(quarters, months, names) cannot be continued: the periods to project over must then be given
by the caller, and the actual points are placed at consecutive positions in their order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_SCHOOL_YEAR = re.compile(r"^(\d{4})-(\d{2}|\d{4})$")
_YEAR = re.compile(r"^\d{4}$")
# Beyond this many periods a projection says nothing useful (and a bad label cannot make it loop).
MAX_PERIODS = 50


@dataclass(frozen=True)
class ForecastPoint:
    """The straight-line value projected for one period."""

    period: str
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.period, "value": self.value}


def period_position(label: str) -> int | None:
    """The year a period label starts in (its position among its kind), or None if the label is
    not a year or a school year."""
    if _YEAR.match(label):
        return int(label)
    m = _SCHOOL_YEAR.match(label)
    if m is None:
        return None
    start, end = int(m.group(1)), m.group(2)
    following = start + 1
    if int(end) != (following % 100 if len(end) == 2 else following):
        return None
    return start


def _label(like: str, start: int) -> str:
    if _YEAR.match(like):
        return str(start)
    end = _SCHOOL_YEAR.match(like)
    assert end is not None
    if len(end.group(2)) == 2:
        return f"{start}-{(start + 1) % 100:02d}"
    return f"{start}-{start + 1}"


def following_periods(last: str, count: int) -> list[str] | None:
    """The ``count`` periods after ``last``, in the same form; None if the label cannot be
    continued (see the module's docstring)."""
    start = period_position(last)
    if start is None:
        return None
    return [_label(last, start + i) for i in range(1, min(count, MAX_PERIODS) + 1)]


def periods_through(last: str, target: str) -> list[str] | None:
    """The periods after ``last`` up to and including ``target`` (empty if ``target`` is not
    after it); None if either label cannot be counted in or they are of different forms."""
    a, b = period_position(last), period_position(target)
    if a is None or b is None or _label(last, b) != target:
        return None
    return following_periods(last, b - a) if b > a else []


def forecast(points: Sequence[tuple[str, float]], periods: Sequence[str]) -> list[ForecastPoint]:
    """The ordinary least squares line through ``points`` (period, actual value), projected over
    ``periods``. The actual points are taken in period order; positions are the labels' years
    when every label is a year or a school year (so a missing period leaves its gap), otherwise
    consecutive integers, with ``periods`` continuing after the last one. Empty when there are
    fewer than two actual points to draw a line through."""
    ordered = sorted(points, key=lambda p: p[0])
    if len({p for p, _ in ordered}) < 2:
        return []
    positions = [period_position(p) for p, _ in ordered]
    ahead = [period_position(p) for p in periods]
    xs: list[float]
    future: list[float]
    if all(x is not None for x in positions) and all(x is not None for x in ahead):
        xs = [float(x) for x in positions if x is not None]
        future = [float(x) for x in ahead if x is not None]
    else:
        xs = [float(i) for i in range(len(ordered))]
        future = [float(len(ordered) + i) for i in range(len(periods))]
    # Centred on the first position: years as positions would cost the line its precision.
    origin = xs[0]
    xs = [x - origin for x in xs]
    future = [x - origin for x in future]
    ys = [float(v) for _, v in ordered]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:  # mixed forms naming the same year: no line through one position
        return []
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    return [
        ForecastPoint(period, intercept + slope * x)
        for period, x in zip(periods, future, strict=True)
    ]
