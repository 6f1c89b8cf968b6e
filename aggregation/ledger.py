"""The persistent privacy-loss ledger.

Each release by differential privacy charges its privacy loss to the budget of every
contributing (agreement, dataset, period) *before* the noisy result is computed. The charge is a
single conditional UPDATE (``spent + epsilon <= limit``): on PostgreSQL it takes the budget's row
lock, on SQLite the database write lock, so concurrent releases are serialized on the budget and
can never spend past it together. The charge lives in the request's transaction: if computing
fails, the transaction rolls back and the charge with it (the refund); if the release is stored,
charge and release commit together. A database check constraint makes overspending impossible
even for a buggy caller.

A budget's limit is the one of the agreement version in force when it is charged: an amendment
that lowers ``epsilon_per_period`` lowers the budgets already open (never below what they have
spent, which the check constraint forbids: such a budget is exhausted), one that raises it
raises them. An agreement may cap the share of a period's budget one release takes
(``max_share_per_release``): every charge is checked against it before anything is charged. :func:`preview` answers what :func:`charge` would do, with the same
refusals, without writing or locking anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aggregation.models import PrivacyBudget, PrivacyCharge
from core.context import RequestContext
from core.errors import Forbidden

_EPS_TOLERANCE = 1e-12


class BudgetExhausted(Forbidden):
    kind = "privacy-budget-exhausted"
    title = "The privacy budget does not allow this release"


class ShareExceeded(Forbidden):
    kind = "privacy-budget-share-exceeded"
    title = "One release may not take this much of a period's privacy budget"


@dataclass(frozen=True)
class Charge:
    """What one release spends from one (agreement, dataset, period) budget. ``limit`` is the
    agreement's budget per period (a new budget starts with it); ``max_share`` the agreement's
    ``max_share_per_release``, if it sets one."""

    agreement_id: str
    dataset: str
    period: str
    epsilon: float
    limit: float
    max_share: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """The budget charged: (agreement, dataset, period)."""
        return (self.agreement_id, self.dataset, self.period)


def _figures(c: Charge, limit: float, spent: float) -> dict[str, Any]:
    return {
        "agreement": c.agreement_id,
        "dataset": c.dataset,
        "period": c.period,
        "epsilon_limit": limit,
        "epsilon_spent": spent,
        "epsilon_requested": c.epsilon,
    }


def _exhausted(c: Charge, limit: float, spent: float) -> BudgetExhausted:
    return BudgetExhausted(
        f"Releasing this would spend epsilon {c.epsilon:g} of the budget of agreement "
        f"{c.agreement_id} for dataset {c.dataset} in period {c.period}, which has "
        f"{max(0.0, limit - spent):g} of {limit:g} left.",
        extra={"budget": _figures(c, limit, spent)},
    )


def _check_share(c: Charge, limit: float, spent: float) -> None:
    """Refuse a charge above the agreement's ``max_share_per_release`` of the period's limit.

    The share is of the limit, not of what remains: a cap bounds how fast a budget can be spent,
    whatever has been spent before."""
    if c.max_share is None or c.epsilon <= c.max_share * limit + _EPS_TOLERANCE:
        return
    raise ShareExceeded(
        f"Releasing this would spend epsilon {c.epsilon:g} of the budget of agreement "
        f"{c.agreement_id} for dataset {c.dataset} in period {c.period}, more than the "
        f"{c.max_share:g} of its limit {limit:g} (epsilon {c.max_share * limit:g}) that the "
        "agreement's term disclosure.privacy.max_share_per_release lets one release take.",
        extra={
            "budget": {**_figures(c, limit, spent), "max_share_per_release": c.max_share},
            "term": "disclosure.privacy.max_share_per_release",
        },
    )


def _state(session: Session, c: Charge, *, fresh: bool = False) -> tuple[float, float]:
    """(limit, spent) of the budget ``c`` is charged to, under the agreement version in force
    (``c.limit``): a budget that has spent more than a lowered limit is exhausted."""
    budget = session.get(PrivacyBudget, c.key, populate_existing=fresh)
    if budget is None:
        return c.limit, 0.0
    return max(c.limit, budget.epsilon_spent), budget.epsilon_spent


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


def _follow_the_agreement(session: Session, c: Charge, now: datetime) -> None:
    """Set the budget's limit to the agreement version in force, never below what is spent."""
    session.execute(
        update(PrivacyBudget)
        .where(
            PrivacyBudget.agreement_id == c.agreement_id,
            PrivacyBudget.dataset == c.dataset,
            PrivacyBudget.period == c.period,
            PrivacyBudget.epsilon_limit != c.limit,
        )
        .values(
            epsilon_limit=case(
                (PrivacyBudget.epsilon_spent > c.limit, PrivacyBudget.epsilon_spent),
                else_=c.limit,
            ),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def charge(
    session: Session, ctx: RequestContext, charges: Sequence[Charge], release_id: str
) -> None:
    """Charge every budget or none; raise :class:`ShareExceeded` if a charge is above its
    agreement's share of a period's budget (before anything is charged), and
    :class:`BudgetExhausted` with the figures if any budget would be exceeded."""
    ordered = sorted(charges, key=lambda c: c.key)  # lock order
    for c in ordered:
        # The share is of the limit in force (the charge's), which no concurrent request changes.
        _check_share(c, c.limit, _state(session, c)[1])
    for c in ordered:
        _ensure(session, c, ctx.now)
        _follow_the_agreement(session, c, ctx.now)
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
            raise _exhausted(c, *_state(session, c, fresh=True))
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


def preview(session: Session, charges: Sequence[Charge]) -> list[dict[str, Any]]:
    """What :func:`charge` would do now, without doing it: nothing is written or locked.

    Raises what :func:`charge` would raise, with the same figures, in the same order; otherwise
    returns, per charge, the budget's limit, what is spent, the epsilon the release would take
    and what would remain. A concurrent release may still spend first: a preview is a reading,
    not a reservation."""
    ordered = sorted(charges, key=lambda c: c.key)
    states = {c.key: _state(session, c, fresh=True) for c in ordered}
    for c in ordered:
        _check_share(c, c.limit, states[c.key][1])
    pending: dict[tuple[str, str, str], float] = {}
    out: list[dict[str, Any]] = []
    for c in ordered:
        limit, stored = states[c.key]
        spent = stored + pending.get(c.key, 0.0)
        if spent + c.epsilon > limit + _EPS_TOLERANCE:
            raise _exhausted(c, limit, spent)
        pending[c.key] = pending.get(c.key, 0.0) + c.epsilon
        out.append(
            {
                "agreement": c.agreement_id,
                "dataset": c.dataset,
                "period": c.period,
                "epsilon": c.epsilon,
                "epsilon_limit": limit,
                "epsilon_spent": round(spent, 12),
                "epsilon_remaining": round(max(0.0, limit - spent), 12),
                "epsilon_remaining_after": round(max(0.0, limit - spent - c.epsilon), 12),
                "max_share_per_release": c.max_share,
            }
        )
    return out


def budgets(
    session: Session,
    agreement_ids: Sequence[str] | None,
    in_force: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Budgets with spent and remaining privacy loss (all of them when ``agreement_ids`` is None).

    ``in_force`` maps an agreement to the ``epsilon_per_period`` of its version in force: the
    limit shown is that one (never below what is spent), as the next charge will apply it."""
    in_force = in_force or {}
    query = select(PrivacyBudget).order_by(
        PrivacyBudget.agreement_id, PrivacyBudget.dataset, PrivacyBudget.period
    )
    if agreement_ids is not None:
        query = query.where(PrivacyBudget.agreement_id.in_(list(agreement_ids)))
    out = []
    for b in session.scalars(query):
        limit = b.epsilon_limit
        if b.agreement_id in in_force:
            limit = max(in_force[b.agreement_id], b.epsilon_spent)
        out.append(
            {
                "agreement": b.agreement_id,
                "dataset": b.dataset,
                "period": b.period,
                "epsilon_limit": limit,
                "epsilon_spent": round(b.epsilon_spent, 12),
                "epsilon_remaining": round(max(0.0, limit - b.epsilon_spent), 12),
                "updated_at": b.updated_at.isoformat(),
            }
        )
    return out
