"""What a reader gets: results with their indicators (values as the reader may read them),
stories behind the curve, strategies, partners' roles and the action plan. Frozen; ``to_dict``
gives the JSON form the API and the pages show."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from results.vocabulary import ActionStatus, Audience, IndicatorRole, Trend


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (dates and times as ISO 8601 text)."""
        return self.model_dump(mode="json")


class Reference(_View):
    period: str
    value: float


class Point(_View):
    """One period of an indicator's series as the reader may read it (None when withheld)."""

    period: str
    value: float | None
    lower: float | None = None
    upper: float | None = None
    status: str | None = None
    release: str


class ForecastValue(_View):
    period: str
    value: float


class IndicatorLink(_View):
    indicator: str
    position: int
    role: IndicatorRole


class IndicatorSummary(_View):
    """An indicator of a result for one reader. ``values_visible`` is False when the reader may
    read none of its releases: the indicator is listed, without values."""

    indicator: str
    position: int
    role: IndicatorRole
    title: str
    unit: str
    direction: str
    baseline: Reference | None
    target: Reference | None
    values_visible: bool
    latest: Point | None = None
    trend: Trend | None = None
    points: list[Point] = []
    forecast: list[ForecastValue] = []


class ResultInfo(_View):
    """A result's own fields and its indicators, without values (what a write answers)."""

    id: str
    title: str
    description: str
    population: str
    geography: str
    public: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    indicators: list[IndicatorLink]


class StoryVersionView(_View):
    version: int
    title: str
    body: str
    as_of: date
    created_at: datetime
    author_organization: str
    author_client: str


class StoryView(_View):
    """A story with its current (newest) version, and every version when asked for."""

    id: str
    result: str
    indicator: str | None
    release: str | None
    author_organization: str
    author_client: str
    audience: Audience
    created_at: datetime
    updated_at: datetime
    current: StoryVersionView
    versions: list[StoryVersionView] | None = None


class EvidenceView(_View):
    title: str
    url: str


class StrategyView(_View):
    id: str
    result: str
    title: str
    description: str
    evidence: list[EvidenceView]
    partners: list[str]
    created_at: datetime
    updated_at: datetime


class CommitmentView(_View):
    text: str
    due: date | None


class PartnerRoleView(_View):
    result: str
    organization: str
    role: str
    commitments: list[CommitmentView]
    updated_at: datetime
    updated_by: str


class ActionView(_View):
    id: str
    result: str
    title: str
    owner: str
    due: date | None
    status: ActionStatus
    created_at: datetime
    updated_at: datetime


class ResultSummary(_View):
    """A result with its indicators as the reader may read them."""

    id: str
    title: str
    description: str
    population: str
    geography: str
    public: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    indicators: list[IndicatorSummary]


class ResultDetail(ResultSummary):
    """A result with everything its page shows: stories (current versions), what works,
    partners' roles and commitments, and the action plan."""

    stories: list[StoryView]
    strategies: list[StrategyView]
    partners: list[PartnerRoleView]
    actions: list[ActionView]
