"""The events a release causes: ``release.published``, and the privacy budgets it took past
80% or used up (``budget.threshold_reached``, ``budget.exhausted``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from aggregation.definition import IndicatorDefinition
from aggregation.ledger import Charge
from aggregation.models import PrivacyBudget, Release
from core.context import RequestContext
from notifications.events import EventType
from notifications.service import emit
from policy.engine import PolicySet
from policy.model import Decision

BUDGET_WARNING_SHARE = 0.8


def published(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    decision: Decision,
    definition: IndicatorDefinition,
    release: Release,
    charges: Sequence[Charge],
) -> None:
    """Emit ``release.published`` to the contributing agreements' parties, and the budget
    events of the ``charges`` a release by differential privacy made (none for suppression)."""
    terms = [t for a, v in decision.agreements for t in policy.versions(a) if t.version == v]
    agreements = [{"id": a, "version": v} for a, v in decision.agreements]
    emit(
        session,
        EventType.RELEASE_PUBLISHED,
        {
            "release": release.id,
            "indicator": release.indicator_id,
            "indicator_version": release.indicator_version,
            "method": release.method,
            "agreements": agreements,
        },
        now=ctx.now,
        agreements=terms,
        datasets=definition.datasets,
    )
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
