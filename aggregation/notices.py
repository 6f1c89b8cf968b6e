"""The events a release causes, for the organizations that subscribed to them:
``release.awaiting_review`` (to its reviewers), ``review.decided``, ``release.published`` (when
it becomes readable, at creation or after its review), and the privacy budgets a release by
differential privacy took past 80% or used up (``budget.threshold_reached``,
``budget.exhausted``, at computation: the budget is charged then, published or not).

The recipients are the parties of the agreements the release counts data under (its
provenance), as :func:`notifications.service.emit` resolves them."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy.orm import Session

from aggregation.definitions import definition_at
from aggregation.ledger import Charge
from aggregation.models import PrivacyBudget, Release
from agreements.repository import get_version
from agreements.service import terms_of
from core.context import RequestContext
from notifications.events import EventType
from notifications.service import emit
from policy.model import AgreementTerms

BUDGET_WARNING_SHARE = 0.8


def _agreements(session: Session, release: Release) -> list[AgreementTerms]:
    """The agreement versions the release counts data under, from its provenance."""
    out = []
    for item in release.provenance.get("agreements", []):
        row = get_version(session, str(item["agreement"]), int(item["version"]))
        if row is not None:
            out.append(terms_of(row))
    return out


def _datasets(session: Session, release: Release) -> tuple[str, ...]:
    definition = definition_at(session, release.indicator_id, release.indicator_version)
    return tuple(definition.datasets)


def _about(release: Release) -> dict[str, object]:
    return {
        "release": release.id,
        "indicator": release.indicator_id,
        "indicator_version": release.indicator_version,
        "method": release.method,
        "agreements": [
            {"id": item["agreement"], "version": item["version"]}
            for item in release.provenance.get("agreements", [])
        ],
    }


def _emit(
    session: Session,
    ctx: RequestContext,
    release: Release,
    event: EventType,
    extra: dict[str, object] | None = None,
    recipients: Collection[str] | None = None,
) -> None:
    emit(
        session,
        event,
        {**_about(release), **(extra or {})},
        now=ctx.now,
        agreements=_agreements(session, release),
        datasets=_datasets(session, release),
        recipients=recipients,
    )


def release_published(session: Session, ctx: RequestContext, release: Release) -> None:
    """``release.published``: the release is readable by its recipients."""
    _emit(session, ctx, release, EventType.RELEASE_PUBLISHED)


def awaiting_review(
    session: Session, ctx: RequestContext, release: Release, reviewers: Collection[str]
) -> None:
    """``release.awaiting_review``, to the reviewing organizations only."""
    _emit(session, ctx, release, EventType.RELEASE_AWAITING_REVIEW, recipients=reviewers)


def review_decided(
    session: Session, ctx: RequestContext, release: Release, organization: str, decision: str
) -> None:
    """``review.decided``: one reviewer approved or objected (the reason is not sent)."""
    _emit(
        session,
        ctx,
        release,
        EventType.REVIEW_DECIDED,
        {"organization": organization, "decision": decision},
    )


def budgets_charged(
    session: Session,
    ctx: RequestContext,
    release: Release,
    charges: Sequence[Charge],
) -> None:
    """The budget events of the ``charges`` a release by differential privacy made."""
    if not charges:
        return
    terms = _agreements(session, release)
    for c in charges:
        # The charge was an UPDATE the session's copy did not see: read the row again.
        budget = session.get(
            PrivacyBudget, (c.agreement_id, c.dataset, c.period), populate_existing=True
        )
        if budget is None:
            continue
        after, limit = budget.epsilon_spent, budget.epsilon_limit
        before = after - c.epsilon
        crossed = [
            kind
            for kind, mark in (
                (EventType.BUDGET_THRESHOLD_REACHED, BUDGET_WARNING_SHARE * limit),
                (EventType.BUDGET_EXHAUSTED, limit - 1e-9),
            )
            if after >= mark > before
        ]
        for kind in crossed:
            emit(
                session,
                kind,
                {
                    "agreement": {"id": c.agreement_id},
                    "dataset": c.dataset,
                    "period": c.period,
                    "epsilon_limit": limit,
                    "epsilon_spent": after,
                    "release": release.id,
                },
                now=ctx.now,
                agreements=[t for t in terms if t.id == c.agreement_id],
                datasets=(c.dataset,),
            )
