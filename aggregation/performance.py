"""Performance measures of partners' programs, in the three questions of Results-Based
Accountability: how much did we do, how well did we do it, is anyone better off.

A performance measure is an indicator definition with a ``performance`` block (checked by
:func:`aggregation.definitions.check_performance`), released through the same protected
pipeline as every indicator. Listing them reads each one's series for the caller through
:func:`aggregation.reads.series`, which authorizes and audits every read: a partner sees its
own programs' measures and those its peers' agreements share with it for peer learning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregation import reads, review
from aggregation.definition import QUESTION_ORDER, IndicatorDefinition, Performance
from aggregation.definitions import list_definitions
from aggregation.models import Release
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import PolicyDenied
from policy.engine import PolicySet


@dataclass(frozen=True)
class MeasureSummary:
    """One performance measure as the caller may read it, with its series."""

    id: str
    title: str
    program: str
    program_title: str
    organization: str
    question: str
    unit: str
    direction: str
    series: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the measure."""
        return {
            "id": self.id,
            "title": self.title,
            "program": self.program,
            "program_title": self.program_title,
            "organization": self.organization,
            "question": self.question,
            "unit": self.unit,
            "direction": self.direction,
            "series": self.series,
        }


def _published_to(session: Session, indicator_id: str, organization: str) -> bool:
    """Whether some published release of the indicator names ``organization`` a recipient
    (so that a measure with nothing to read costs neither a series nor its audit event)."""
    recipients = session.scalars(
        select(Release.recipients).where(
            Release.indicator_id == indicator_id, Release.state == review.PUBLISHED
        )
    )
    return any(organization in r for r in recipients)


def list_measures(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    views: reads.ReleaseViews,
    *,
    program: str | None = None,
    organization: str | None = None,
) -> list[MeasureSummary]:
    """The performance measures the caller may read at least one release of, each with its
    series for the caller (every read authorized and audited by :func:`reads.series`),
    grouped by program and, within a program, in the order how much, how well, better off.

    ``program`` and ``organization`` restrict the list to one program or to the programs one
    organization runs. A measure the agreements no longer let the caller read is left out.
    The listing itself is audited too, with how many measures it showed and how many it
    withheld because a read was denied, so that a caller shown nothing still leaves its event."""
    assert ctx.principal is not None
    caller = ctx.principal.organization_id
    candidates: list[tuple[IndicatorDefinition, Performance]] = []
    for _version, definition in list_definitions(session):
        performance = definition.performance
        if performance is None:
            continue
        if program is not None and performance.program != program:
            continue
        if organization is not None and performance.organization != organization:
            continue
        candidates.append((definition, performance))
    candidates.sort(key=lambda c: (c[1].program, QUESTION_ORDER.index(c[1].question), c[0].id))
    out: list[MeasureSummary] = []
    withheld = 0
    for definition, performance in candidates:
        if not _published_to(session, definition.id, caller):
            continue
        try:
            series = reads.series(session, ctx, policy, views, definition.id, {})
        except (PolicyDenied, review.ReleaseNotPublished):
            # Not readable to this caller now (an agreement ended, or a release is held):
            # the measure is left out of its list, and counted in the listing's event.
            withheld += 1
            continue
        if not series["releases"]:
            continue
        out.append(
            MeasureSummary(
                id=definition.id,
                title=definition.title,
                program=performance.program,
                program_title=performance.program_title,
                organization=performance.organization,
                question=performance.question.value,
                unit=definition.unit.value,
                direction=definition.direction,
                series=series,
            )
        )
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_READ,
            resource_type="performance_measures",
            counts={"measures": len(out), "withheld": withheld},
        ),
    )
    return out
