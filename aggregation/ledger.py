"""The persistent privacy-loss ledger.

Each release by differential privacy charges its privacy loss to the budget of every
contributing (agreement, dataset, period) *before* the noisy result is computed. The charge is a
single conditional UPDATE (``spent + epsilon <= limit``): on PostgreSQL it takes the budget's row
lock, on SQLite the database write lock, so concurrent releases are serialized on the budget and
can never spend past it together. The charge lives in the request's transaction: if computing
fails, the transaction rolls back and the charge with it (the refund); if the release is stored,
charge and release commit together. A database check constraint makes overspending impossible
even for a buggy caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aggregation.models import PrivacyBudget, PrivacyCharge
from core.context import RequestContext
from core.errors import Forbidden

_EPS_TOLERANCE = 1e-12


class BudgetExhausted(Forbidden):
    kind = "privacy-budget-exhausted"
    title = "The privacy budget does not allow this release"


@dataclass(frozen=True)
class Charge:
    agreement_id: str
    dataset: str
    period: str
    epsilon: float
    limit: float


def period_of(kind: str | None, now: datetime) -> str:
    """The budget period a release at ``now`` falls in: a calendar year, a school year
    (July to June) or the whole agreement term."""
    if kind == "school_year":
        start = now.year if now.month >= 7 else now.year - 1
        return f"{start}-{str(start + 1)[-2:]}"
    if kind == "agreement_term":
        return "term"
    return str(now.year)


def _ensure(session: Session, charge: Charge, now: datetime) -> None:
    if session.get(PrivacyBudget, (charge.agreement_id, charge.dataset, charge.period)) is not None:
        return
    try:
        with session.begin_nested():
            session.add(
                PrivacyBudget(
                    agreement_id=charge.agreement_id,
                    dataset=charge.dataset,
                    period=charge.period,
                    epsilon_limit=charge.limit,
                    epsilon_spent=0.0,
                    updated_at=now,
                )
            )
    except IntegrityError:
        pass  # another request created it first; fine


def charge(
    session: Session, ctx: RequestContext, charges: Sequence[Charge], release_id: str
) -> None:
    """Charge every budget or none; raise :class:`BudgetExhausted` with the figures if any
    budget would be exceeded."""
    for c in sorted(charges, key=lambda c: (c.agreement_id, c.dataset, c.period)):  # lock order
        _ensure(session, c, ctx.now)
        result = session.execute(
            update(PrivacyBudget)
            .where(
                PrivacyBudget.agreement_id == c.agreement_id,
                PrivacyBudget.dataset == c.dataset,
                PrivacyBudget.period == c.period,
                PrivacyBudget.epsilon_spent + c.epsilon
                <= PrivacyBudget.epsilon_limit + _EPS_TOLERANCE,
            )
            .values(
                epsilon_spent=PrivacyBudget.epsilon_spent + c.epsilon,
                epsilon_limit=PrivacyBudget.epsilon_limit,
                updated_at=ctx.now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            budget = session.get(PrivacyBudget, (c.agreement_id, c.dataset, c.period))
            session.refresh(budget) if budget is not None else None
            spent = budget.epsilon_spent if budget else 0.0
            limit = budget.epsilon_limit if budget else c.limit
            raise BudgetExhausted(
                f"Releasing this would spend epsilon {c.epsilon:g} of the budget of agreement "
                f"{c.agreement_id} for dataset {c.dataset} in period {c.period}, which has "
                f"{max(0.0, limit - spent):g} of {limit:g} left.",
                extra={
                    "budget": {
                        "agreement": c.agreement_id,
                        "dataset": c.dataset,
                        "period": c.period,
                        "epsilon_limit": limit,
                        "epsilon_spent": spent,
                        "epsilon_requested": c.epsilon,
                    }
                },
            )
        session.add(
            PrivacyCharge(
                agreement_id=c.agreement_id,
                dataset=c.dataset,
                period=c.period,
                epsilon=c.epsilon,
                release_id=release_id,
                request_id=ctx.request_id,
                at=ctx.now,
            )
        )
    session.flush()


def budgets(session: Session, agreement_ids: Sequence[str] | None) -> list[dict[str, Any]]:
    """Budgets with spent and remaining privacy loss (all of them when ``agreement_ids`` is None)."""
    query = select(PrivacyBudget).order_by(
        PrivacyBudget.agreement_id, PrivacyBudget.dataset, PrivacyBudget.period
    )
    if agreement_ids is not None:
        query = query.where(PrivacyBudget.agreement_id.in_(list(agreement_ids)))
    return [
        {
            "agreement": b.agreement_id,
            "dataset": b.dataset,
            "period": b.period,
            "epsilon_limit": b.epsilon_limit,
            "epsilon_spent": round(b.epsilon_spent, 12),
            "epsilon_remaining": round(max(0.0, b.epsilon_limit - b.epsilon_spent), 12),
            "updated_at": b.updated_at.isoformat(),
        }
        for b in session.scalars(query)
    ]
