"""Indicator definitions: what is counted, over which population, along which dimensions."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from disclosure.vocabulary import RATE_UNITS, Unit
from policy.vocabulary import DisclosureMethod

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Measure(_Strict):
    dataset: Slug
    filter: str | None = Field(default=None, max_length=2000)


class Cohort(_Strict):
    """Restrict the population to people who also appear in another dataset (via linkage)."""

    dataset: Slug
    filter: str | None = Field(default=None, max_length=2000)


class Reference(_Strict):
    period: str
    value: float


class Question(StrEnum):
    """The three questions of Results-Based Accountability a performance measure answers."""

    HOW_MUCH = "how_much"  # how much did we do: a count of the people served
    HOW_WELL = "how_well"  # how well did we do it: a rate among the people served
    BETTER_OFF = "better_off"  # is anyone better off: a count or a rate of an outcome


# The order in which a program's measures are shown, as RBA asks them.
QUESTION_ORDER: tuple[Question, ...] = (Question.HOW_MUCH, Question.HOW_WELL, Question.BETTER_OFF)


class Performance(_Strict):
    """What makes an indicator a performance measure of a partner's program."""

    program: Slug
    program_title: str = Field(min_length=1, max_length=200)
    organization: Slug = Field(description="the organization that runs the program")
    question: Question


class IndicatorDefinition(_Strict):
    id: Slug
    title: str = Field(min_length=1, max_length=300)
    description: str = ""
    unit: Unit
    direction: Literal["increase", "decrease"] = "increase"
    purpose: str
    recipients: list[Slug] = Field(min_length=1)
    numerator: Measure
    denominator: Measure | None = None
    value_field: FieldName | None = Field(default=None, description="averaged field, unit mean")
    cohort: Cohort | None = None
    dimensions: list[FieldName] = Field(default_factory=list, max_length=4)
    period_dimension: FieldName | None = None
    method: DisclosureMethod = DisclosureMethod.SUPPRESSION
    baseline: Reference | None = None
    target: Reference | None = None
    performance: Performance | None = None

    @model_validator(mode="after")
    def _shape(self) -> IndicatorDefinition:
        if self.unit in RATE_UNITS and self.denominator is None:
            raise ValueError(f"unit {self.unit} needs a denominator")
        if self.unit == Unit.COUNT and self.denominator is not None:
            raise ValueError("unit count takes no denominator")
        if self.unit == Unit.MEAN and self.value_field is None:
            raise ValueError("unit mean needs value_field")
        if self.denominator is not None and self.denominator.dataset != self.numerator.dataset:
            raise ValueError("numerator and denominator must count the same dataset")
        if len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError("a dimension is listed twice")
        if self.period_dimension is not None and self.period_dimension not in self.dimensions:
            raise ValueError("period_dimension must be one of the dimensions")
        if self.performance is not None:
            self._performance_shape(self.performance)
        return self

    def _performance_shape(self, performance: Performance) -> None:
        # RBA: "how much" counts the people served; "how well" is a share of them (a count of
        # how well would be another "how much"); "better off" is reported as a number and as
        # a share, so either. A measure is followed over time, so it has a period.
        if performance.question == Question.HOW_MUCH and self.unit != Unit.COUNT:
            raise ValueError("a how_much performance measure is a count")
        if performance.question == Question.HOW_WELL and self.unit not in RATE_UNITS:
            raise ValueError("a how_well performance measure is a rate (percent or rate_per_1000)")
        if performance.question == Question.BETTER_OFF and self.unit == Unit.MEAN:
            raise ValueError("a better_off performance measure is a count or a rate")
        if self.period_dimension is None:
            raise ValueError("a performance measure needs a period_dimension")

    @property
    def dataset(self) -> str:
        return self.numerator.dataset

    @property
    def datasets(self) -> tuple[str, ...]:
        return (self.dataset, self.cohort.dataset) if self.cohort else (self.dataset,)

    def content_hash(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(raw).hexdigest()
