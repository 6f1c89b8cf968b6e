"""What the pages show, gathered from the same services as the JSON routes.

Nothing here reads a table of its own: definitions, series and releases come from
``aggregation`` (which authorizes every release for the reader and records the read in the audit
log), results and stories from ``results``. The reader of the public pages is the public
(:data:`policy.model.PUBLIC_PRINCIPAL`), so a page shows exactly what an anonymous API call may
read, and leaves the same audit events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from aggregation import definitions, reads
from aggregation.definition import IndicatorDefinition
from api.pages import charts
from audit.service import record
from core.context import RequestContext
from core.errors import DomainError
from disclosure.cube import TOTAL
from identity.service import list_organizations
from policy.engine import PolicySet
from policy.model import PUBLIC_PRINCIPAL
from results import service as results
from results.views import IndicatorSummary

PERIOD_LABELS = {"school_year": "School year", "birth_year": "Birth year", "year": "Year"}
MAX_BREAKDOWN_BARS = 60


def label(name: str) -> str:
    """A field name as a heading."""
    return PERIOD_LABELS.get(name) or name.replace("_", " ").capitalize()


@dataclass
class Breakdown:
    release_id: str
    dimension: str
    period: str | None
    rows: list[dict[str, Any]]
    chart: charts.Chart | None


@dataclass
class Download:
    release_id: str
    dimensions: list[str]
    method: str
    created_at: str
    published_at: str | None
    audit_index: int | None
    provenance: dict[str, Any]
    parameters: dict[str, Any]


@dataclass
class IndicatorPage:
    id: str
    definition: IndicatorDefinition
    period_label: str
    summary: IndicatorSummary
    chart: charts.Chart | None
    breakdowns: list[Breakdown] = field(default_factory=list)
    downloads: list[Download] = field(default_factory=list)

    @property
    def points(self) -> list[Any]:
        return list(self.summary.points)

    @property
    def latest(self) -> Any:
        return self.summary.latest

    @property
    def trend(self) -> str | None:
        return self.summary.trend

    @property
    def forecast(self) -> list[Any]:
        return list(self.summary.forecast)

    @property
    def dp(self) -> bool:
        return any(p.lower is not None for p in self.summary.points)


def initiative_name(session: Session) -> str:
    """The initiative's name, as its backbone organization is called."""
    for org in list_organizations(session):
        if org.kind == "backbone":
            return org.name
    return "Backbone"


def public_definition(session: Session, indicator_id: str) -> tuple[int, IndicatorDefinition]:
    """An indicator the public may know of: one published to the public. Any other is not
    found, exactly like an indicator that does not exist."""
    version, definition = definitions.get_definition(session, indicator_id, reader=PUBLIC_PRINCIPAL)
    return version.version, definition


def public_indicators(session: Session) -> list[tuple[int, IndicatorDefinition]]:
    """The indicators published to the public, in definition order."""
    return [
        (v.version, d) for v, d in definitions.list_definitions(session, reader=PUBLIC_PRINCIPAL)
    ]


def curve_for(definition: IndicatorDefinition, summary: IndicatorSummary) -> charts.Curve:
    """The turn-the-curve chart's content for an indicator, as the reader may read it."""
    period = definition.period_dimension or "period"
    return charts.Curve(
        title=definition.title,
        unit=str(definition.unit),
        direction=definition.direction,
        period_label=label(period),
        points=tuple(
            charts.CurvePoint(p.period, p.value, p.lower, p.upper, p.status) for p in summary.points
        ),
        forecast=tuple((f.period, f.value) for f in summary.forecast),
        baseline=(
            (definition.baseline.period, definition.baseline.value) if definition.baseline else None
        ),
        target=((definition.target.period, definition.target.value) if definition.target else None),
    )


def _breakdowns(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    views: reads.ReleaseViews,
    indicator_id: str,
    definition: IndicatorDefinition,
    cache: charts.ChartCache,
) -> tuple[list[Breakdown], list[Download]]:
    period = definition.period_dimension
    breakdowns: list[Breakdown] = []
    downloads: list[Download] = []
    seen: set[str] = set()
    for release in reads.list_releases(session, indicator_id, reader=ctx.principal):
        view = views.load(session, release.id)
        try:
            decision = reads.authorize_read(ctx, policy, view)
        except DomainError:
            continue
        record(session, ctx, reads.read_record(view, decision))
        downloads.append(
            Download(
                release_id=view.id,
                dimensions=list(view.dimensions),
                method=view.method,
                created_at=view.created_at.date().isoformat(),
                published_at=view.published_at.date().isoformat() if view.published_at else None,
                audit_index=view.audit_index,
                provenance=view.provenance,
                parameters=view.parameters,
            )
        )
        for dim in view.dimensions:
            if dim == period or dim in seen:
                continue
            periods = (
                sorted(
                    {str(c.get(period)) for c in view.cells if c.get(period) not in (None, TOTAL)}
                )
                if period in view.dimensions
                else []
            )
            latest = periods[-1] if periods else None
            rows = [
                dict(c)
                for c in view.cells
                if c.get(dim) not in (None, TOTAL)
                and all(
                    (c.get(d) == latest if d == period else c.get(d) == TOTAL)
                    for d in view.dimensions
                    if d != dim
                )
            ]
            if not rows:
                continue
            rows.sort(key=lambda c: str(c.get(dim)))
            seen.add(dim)
            chart = None
            if len(rows) <= MAX_BREAKDOWN_BARS:
                bars = [
                    charts.Bar(
                        str(c.get(dim)),
                        None if c.get("value") is None else float(c["value"]),
                        None if c.get("lower") is None else float(c["lower"]),
                        None if c.get("upper") is None else float(c["upper"]),
                        c.get("status"),
                    )
                    for c in rows
                ]
                title = f"{definition.title} by {label(dim).lower()}" + (
                    f", {latest}" if latest else ""
                )
                chart = cache.bars(title, str(definition.unit), bars)
            breakdowns.append(Breakdown(view.id, dim, latest, rows, chart))
    return breakdowns, downloads


def _chart(
    definition: IndicatorDefinition, summary: IndicatorSummary, cache: charts.ChartCache
) -> charts.Chart | None:
    if not summary.values_visible or not summary.points:
        return None
    return cache.curve(curve_for(definition, summary))


def _names(session: Session) -> dict[str, str]:
    return {o.id: o.name for o in list_organizations(session)}


def _story(story: Any, names: dict[str, str]) -> dict[str, Any]:
    current = story.current
    return {
        "id": story.id,
        "title": current.title,
        "body": current.body,
        "as_of": current.as_of.isoformat(),
        "version": current.version,
        "author_name": names.get(story.author_organization, story.author_organization),
    }


def indicator_page(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    views: reads.ReleaseViews,
    cache: charts.ChartCache,
    indicator_id: str,
    *,
    breakdowns: bool,
) -> dict[str, Any]:
    """An indicator's page: its turn-the-curve chart and series, breakdowns by the released
    dimensions, stories behind the curve, the results it serves, and its releases with their
    provenance (raises :class:`NotFound` unless it is published to the public)."""
    _version, definition = public_definition(session, indicator_id)
    summary = results.summarize_indicator(session, ctx, policy, views, indicator_id)
    page = IndicatorPage(
        id=indicator_id,
        definition=definition,
        period_label=label(definition.period_dimension or "period"),
        summary=summary,
        chart=_chart(definition, summary, cache),
    )
    out: dict[str, Any] = {"page": page, "initiative": initiative_name(session)}
    if not breakdowns:
        return out
    page.breakdowns, page.downloads = _breakdowns(
        session, ctx, policy, views, indicator_id, definition, cache
    )
    names = _names(session)
    out["stories"] = [
        _story(s, names) for s in results.stories_for_indicator(session, ctx, indicator_id)
    ]
    out["results"] = results.results_for_indicator(session, ctx, indicator_id)
    return out


def _indicator_row(summary: IndicatorSummary, public: set[str]) -> dict[str, Any]:
    return {
        "id": summary.indicator,
        "title": summary.title,
        "unit": summary.unit,
        "direction": summary.direction,
        "latest": summary.latest,
        "trend": summary.trend,
        "baseline": summary.baseline,
        "target": summary.target,
        "public": summary.indicator in public,
    }


def scorecard(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    views: reads.ReleaseViews,
    cache: charts.ChartCache,
) -> dict[str, Any]:
    """The initiative's scorecard: each result with its indicators' latest values, trends,
    baselines and targets, and the public indicators that serve no result."""
    public = {d.id for _v, d in public_indicators(session)}
    rows = results.list_results(session, ctx, policy, views)
    listed = {i.indicator for r in rows for i in r.indicators}
    return {
        "initiative": initiative_name(session),
        "results": [
            {
                "id": r.id,
                "title": r.title,
                "description": r.description,
                "indicators": [_indicator_row(i, public) for i in r.indicators],
            }
            for r in rows
        ],
        "others": [
            {"id": d.id, "title": d.title}
            for _v, d in public_indicators(session)
            if d.id not in listed
        ],
    }


def result_page(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    views: reads.ReleaseViews,
    cache: charts.ChartCache,
    result_id: str,
) -> dict[str, Any]:
    """A result's page: the curves of its indicators, the story behind them, what works, the
    partners with a role and the action plan (raises :class:`NotFound` unless it is public)."""
    detail = results.get_result(session, ctx, policy, views, result_id)
    public = {d.id: d for _v, d in public_indicators(session)}
    names = _names(session)
    indicators = []
    for summary in detail.indicators:
        definition = public.get(summary.indicator)
        page = None
        if definition is not None:
            page = IndicatorPage(
                id=summary.indicator,
                definition=definition,
                period_label=label(definition.period_dimension or "period"),
                summary=summary,
                chart=_chart(definition, summary, cache),
            )
        indicators.append({**_indicator_row(summary, set(public)), "page": page})
    return {
        "initiative": initiative_name(session),
        "result": detail,
        "indicators": indicators,
        "stories": [_story(s, names) for s in detail.stories],
        "strategies": [
            {
                "title": s.title,
                "description": s.description,
                "evidence": s.evidence,
                "partners": [names.get(p, p) for p in s.partners],
            }
            for s in detail.strategies
        ],
        "partners": [
            {
                "name": names.get(p.organization, p.organization),
                "role": p.role,
                "commitments": [
                    {"text": c.text, "due": c.due.isoformat() if c.due else None}
                    for c in p.commitments
                ],
            }
            for p in detail.partners
        ],
        "actions": [
            {
                "title": a.title,
                "owner": names.get(a.owner, a.owner),
                "due": a.due.isoformat() if a.due else None,
                "status": str(a.status),
            }
            for a in detail.actions
        ],
    }
