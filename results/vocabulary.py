"""The closed sets of values of results: stored, published in the JSON Schema, never renamed."""

from __future__ import annotations

from enum import StrEnum


class IndicatorRole(StrEnum):
    """How an indicator measures a result: the headline one(s), or those that add context."""

    PRIMARY = "primary"
    SECONDARY = "secondary"


class Audience(StrEnum):
    """Who reads a story behind the curve: anyone (with a public result), or the initiative."""

    PUBLIC = "public"
    INITIATIVE = "initiative"


class ActionStatus(StrEnum):
    """Where an item of an action plan stands."""

    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    DONE = "done"


class Trend(StrEnum):
    """The latest value against the previous one, in the direction of good."""

    BETTER = "better"
    WORSE = "worse"
    FLAT = "flat"
