"""Reading releases: who may read a stored release, its audit event, and an indicator's series
over time."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregation import review as reviews
from aggregation.definitions import IndicatorInvalid, definition_at, get_definition
from aggregation.models import Release
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import DomainError, NotFound, PolicyDenied
from disclosure.cube import TOTAL
from policy.engine import PolicySet, decide
from policy.explain import explanation
from policy.model import PUBLIC, PUBLIC_PRINCIPAL, Context, Decision, Principal, Resource


@dataclass(frozen=True)
class ReleaseView:
    """A stored release with the definition it was computed from. A published release never
    changes, so its view is cached by id (the authorization check and the audit event are not);
    a held one can still be published or objected to, so its view is never cached."""

    id: str
    indicator_id: str
    indicator_version: int
    unit: str
    purpose: str
    datasets: tuple[str, ...]
    dimensions: tuple[str, ...]
    method: str
    parameters: dict[str, Any]
    cells: tuple[dict[str, Any], ...]
    provenance: dict[str, Any]
    recipients: frozenset[str]
    created_at: datetime
    audit_index: int | None
    state: str = reviews.PUBLISHED
    published_at: datetime | None = None
    # Who reviewed it and how, without the reviewers' reasons (recipients read this).
    review: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "indicator": self.indicator_id,
            "indicator_version": self.indicator_version,
            "unit": self.unit,
            "method": self.method,
            "dimensions": list(self.dimensions),
            "parameters": self.parameters,
            "created_at": self.created_at.isoformat(),
            "audit_index": self.audit_index,
            "state": self.state,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "review": self.review,
        }


class ReleaseViews:
    """Views of published releases by id, most recently used kept (a published release never
    changes, so a view never goes stale; a held one is read from the database every time, so
    that a decision made by another worker is seen at once). One per application (on its
    state), so that tests and workers own its lifetime; the authorization check and the audit
    event are never cached."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._views: OrderedDict[str, ReleaseView] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, release_id: str) -> ReleaseView | None:
        """The view of a release loaded before, if it is still held."""
        with self._lock:
            view = self._views.get(release_id)
            if view is not None:
                self._views.move_to_end(release_id)
            return view

    def load(self, session: Session, release_id: str) -> ReleaseView:
        """The view of a stored release (raises :class:`NotFound`)."""
        view = self.cached(release_id)
        if view is not None:
            return view
        release = session.get(Release, release_id)
        if release is None:
            raise NotFound("No such release.")
        rows = reviews.reviews_of(session, release.id)
        definition = definition_at(session, release.indicator_id, release.indicator_version)
        view = ReleaseView(
            id=release.id,
            indicator_id=release.indicator_id,
            indicator_version=release.indicator_version,
            unit=definition.unit,
            purpose=definition.purpose,
            datasets=definition.datasets,
            dimensions=tuple(release.dimensions),
            method=release.method,
            parameters=dict(release.parameters),
            cells=tuple(release.cells),
            provenance=dict(release.provenance),
            recipients=frozenset(release.recipients),
            created_at=release.created_at,
            audit_index=release.audit_index,
            state=release.state,
            published_at=release.published_at,
            review=reviews.summary(release, rows, reasons=False),
        )
        if view.state != reviews.PUBLISHED:
            return view
        with self._lock:
            self._views[release_id] = view
            while len(self._views) > self._size:
                self._views.popitem(last=False)
        return view


def reader_for(principal: Principal, recipients: frozenset[str] | list[str]) -> Principal:
    """Who ``principal`` reads a release published to ``recipients`` as: itself when its
    organization is named among them, else the public when the release is public (public means
    everyone), else itself (and is then refused)."""
    if principal.organization_id in recipients:
        return principal
    return PUBLIC_PRINCIPAL if PUBLIC in recipients else principal


def may_list(principal: Principal, recipients: frozenset[str] | list[str]) -> bool:
    """Whether a published release to ``recipients`` is listed to ``principal``: its
    organization is a recipient, or the release is public."""
    return principal.organization_id in recipients or PUBLIC in recipients


def authorize_read(ctx: RequestContext, policy: PolicySet, view: ReleaseView) -> Decision:
    """The caller's organization must be a recipient of the release and, under every
    contributing agreement in force, a permitted reader. A release published to the public is
    read by anyone as the public: the public must be a recipient and every contributing
    agreement must name it as one."""
    assert ctx.principal is not None
    reader = reader_for(ctx.principal, view.recipients)
    if reader.organization_id == PUBLIC and PUBLIC not in view.recipients:
        # The public is told nothing of the agreements behind a release it may not read.
        raise PolicyDenied("Denied: this release is not published to the public.")
    decision = decide(reader, "read", Resource(datasets=view.datasets), Context(), policy, ctx.now)
    if not decision.permitted:
        raise PolicyDenied(explanation(decision), decision=decision)
    if reader.organization_id not in view.recipients:
        raise PolicyDenied(
            "Denied: your organization is not among the recipients this indicator was published to."
        )
    if view.state == reviews.PENDING:
        raise reviews.ReleaseNotPublished(
            "This release is held for review by the organizations that provide its data; "
            "recipients can read it once it is published.",
            extra={"state": view.state},
        )
    if view.state != reviews.PUBLISHED:
        raise reviews.ReleaseNotPublished(
            "This release was not published: an organization that provides its data objected "
            "to it during review.",
            extra={"state": view.state},
        )
    return decision


def read_record(view: ReleaseView, decision: Decision) -> AuditRecord:
    """The audit event of a permitted read of ``view``."""
    return AuditRecord(
        action=AuditAction.RELEASE_READ,
        resource_type="release",
        resource_id=view.id,
        decision=decision,
    )


def list_releases(
    session: Session,
    indicator_id: str,
    *,
    published_only: bool = True,
    reader: Principal | None = None,
) -> Sequence[Release]:
    """The releases of an indicator, newest first (by id among those of the same instant):
    the published ones, or every one held or objected to as well. With ``reader``, only the
    published ones it may read (see :func:`may_list`): the public sees public releases only."""
    query = select(Release).where(Release.indicator_id == indicator_id)
    if published_only or reader is not None:
        query = query.where(Release.state == reviews.PUBLISHED)
    found = session.scalars(query.order_by(Release.created_at.desc(), Release.id.desc())).all()
    if reader is None:
        return found
    return [r for r in found if may_list(reader, r.recipients)]


def series(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    views: ReleaseViews,
    indicator_id: str,
    filters: dict[str, frozenset[str]],
) -> dict[str, Any]:
    """The indicator over time: for each period, the value of the most recent release that
    has it, at the totals of every dimension not filtered on; with baseline and target.

    Only the releases the caller may read are used (the public's series is made of public
    releases); it is refused only when there are releases to use and it may read none."""
    assert ctx.principal is not None
    version, definition = get_definition(session, indicator_id, reader=ctx.principal)
    period = definition.period_dimension
    if period is None:
        raise IndicatorInvalid("This indicator has no period dimension, so it has no time series.")
    unknown = set(filters) - set(definition.dimensions)
    if unknown or period in filters:
        raise IndicatorInvalid("Filter on the indicator's non-period dimensions only.")
    if any(len(v) != 1 for v in filters.values()):
        raise IndicatorInvalid("A series takes one value per filtered dimension.")
    reviews.settle_indicator(session, ctx, indicator_id)
    points: dict[str, dict[str, Any]] = {}
    used: list[str] = []
    decision: Decision | None = None
    refused: DomainError | None = None
    for release in list_releases(session, indicator_id):
        if period not in release.dimensions or not set(filters) <= set(release.dimensions):
            continue
        view = views.load(session, release.id)
        try:
            decision = authorize_read(ctx, policy, view)
        except (PolicyDenied, reviews.ReleaseNotPublished) as exc:
            refused = refused or exc
            continue
        contributed = False
        for cell in view.cells:
            label = cell.get(period)
            if label == TOTAL or label in points:
                continue
            if all(
                (str(cell.get(d)) in filters[d]) if d in filters else cell.get(d) == TOTAL
                for d in view.dimensions
                if d != period
            ):
                points[str(label)] = {
                    "period": label,
                    **{d: cell.get(d) for d in filters},
                    **{
                        k: cell.get(k)
                        for k in ("value", "lower", "upper", "status", "numerator", "denominator")
                    },
                    "release": view.id,
                }
                contributed = True
        if contributed:
            used.append(view.id)
    if decision is None and refused is not None:
        raise refused
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_READ,
            resource_type="indicator_series",
            resource_id=indicator_id,
            decision=decision,
            counts={"releases": len(used), "points": len(points)},
        ),
    )
    return {
        "indicator": indicator_id,
        "version": version.version,
        "title": definition.title,
        "unit": definition.unit,
        "direction": definition.direction,
        "period_dimension": period,
        "filters": {d: sorted(v) for d, v in filters.items()},
        "baseline": definition.baseline.model_dump() if definition.baseline else None,
        "target": definition.target.model_dump() if definition.target else None,
        "points": [points[p] for p in sorted(points)],
        "releases": used,
    }
