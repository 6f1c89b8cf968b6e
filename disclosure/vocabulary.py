"""The closed sets of values of the disclosure-control engine: the unit a published value is in
and the status a published cell carries. The one source of these strings: the indicator
definitions' JSON Schema, the engine and the release formats derive from here, and a test keeps
copies from coming back. Like :mod:`policy.vocabulary`, it imports nothing from Backbone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Unit(StrEnum):
    """What an indicator's published value measures."""

    PERCENT = "percent"
    RATE_PER_1000 = "rate_per_1000"
    COUNT = "count"
    MEAN = "mean"  # of a field; released by differential privacy only


# Published value per counted person, for the units of counts and rates.
UNIT_SCALE: Final[dict[str, float]] = {
    Unit.COUNT: 1.0,
    Unit.PERCENT: 100.0,
    Unit.RATE_PER_1000: 1000.0,
}
RATE_UNITS: Final = frozenset({Unit.PERCENT, Unit.RATE_PER_1000})


class CellStatus(StrEnum):
    """The status of a cell of a release (stored with it, shown to readers and in SDMX)."""

    FREE = "free"  # published as computed (or rounded to nothing: scheme none)
    SUPPRESSED = "suppressed"  # what a reader sees of a primary or secondary cell
    PRIMARY = "primary"  # withheld: too few people (the engine's and auditors' view)
    SECONDARY = "secondary"  # withheld to protect a primary cell
    ROUNDED = "rounded"  # published rounded, or top/bottom coded
    DP = "dp"  # published with differentially private noise
    LOW_RELIABILITY = "low_reliability"  # noisy value with a wide confidence interval
    STRUCTURAL_ZERO = "structural_zero"  # a cell that cannot exist under the agreement
    EMPTY = "empty"  # found only in releases stored by earlier versions (read, never written)
