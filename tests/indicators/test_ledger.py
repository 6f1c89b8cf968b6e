"""The privacy ledger never lets concurrent releases spend past a budget."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from aggregation.ledger import (
    BudgetExhausted,
    Charge,
    ShareExceeded,
    budgets,
    charge,
    period_of,
    preview,
)
from aggregation.models import PrivacyBudget, PrivacyCharge
from core.context import RequestContext
from core.db import make_engine
from migrations.commands import upgrade


@pytest.fixture
def committed(fresh_databases):
    url = fresh_databases.url()
    upgrade(url)
    engine = make_engine(
        url, **({} if url.startswith("sqlite") else {"pool_size": 60, "max_overflow": 0})
    )
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()


def _ctx(i: int) -> RequestContext:
    return RequestContext(f"req-{i}", datetime(2026, 3, 1, tzinfo=UTC))


def test_fifty_concurrent_releases_never_overspend(committed):
    limit, epsilon = 4.0, 0.5
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def release(i: int) -> None:
        start.wait()
        with committed() as session:
            try:
                charge(
                    session,
                    _ctx(i),
                    [
                        Charge("agr", "ds", "2026", epsilon, limit),
                        Charge("agr2", "ds2", "2026", epsilon, 10.0),
                    ],
                    f"rel-{i}",
                )
                session.commit()
                result = "charged"
            except BudgetExhausted:
                session.rollback()
                result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=release, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("charged") == int(limit / epsilon) == 8
    with committed() as session:
        spent = session.get(PrivacyBudget, ("agr", "ds", "2026")).epsilon_spent
        assert spent == pytest.approx(limit)
        assert (
            session.scalar(
                select(func.count())
                .select_from(PrivacyCharge)
                .where(PrivacyCharge.agreement_id == "agr")
            )
            == 8
        )
        # All or nothing: the second budget was charged exactly as often as the first.
        assert session.get(PrivacyBudget, ("agr2", "ds2", "2026")).epsilon_spent == pytest.approx(
            8 * epsilon
        )


def test_a_refusal_explains_itself_and_a_rollback_refunds(committed):
    with committed() as session:
        charge(session, _ctx(1), [Charge("a", "d", "2026", 3.0, 4.0)], "r1")
        session.commit()
    with committed() as session:
        with pytest.raises(BudgetExhausted) as refused:
            charge(session, _ctx(2), [Charge("a", "d", "2026", 1.5, 4.0)], "r2")
        assert refused.value.extra["budget"] == {
            "agreement": "a",
            "dataset": "d",
            "period": "2026",
            "epsilon_limit": 4.0,
            "epsilon_spent": 3.0,
            "epsilon_requested": 1.5,
        }
        assert "1 of 4 left" in refused.value.detail
        session.rollback()
    with committed() as session:
        charge(session, _ctx(3), [Charge("a", "d", "2026", 1.0, 4.0)], "r3")
        session.rollback()  # the computation failed: the charge is refunded with the transaction
    with committed() as session:
        [row] = budgets(session, ["a"])
        assert row["epsilon_spent"] == 3.0 and row["epsilon_remaining"] == 1.0


def _stored(session) -> tuple[list[tuple[object, ...]], int]:
    rows = [
        (b.agreement_id, b.dataset, b.period, b.epsilon_limit, b.epsilon_spent)
        for b in session.scalars(select(PrivacyBudget).order_by(PrivacyBudget.agreement_id))
    ]
    return rows, session.scalar(select(func.count()).select_from(PrivacyCharge))


def test_a_charge_above_the_agreements_share_is_refused_and_nothing_is_charged(committed):
    capped = Charge("a", "d", "2026", 1.5, 4.0, max_share=0.25)
    other = Charge("b", "d", "2026", 1.5, 10.0)
    with committed() as session:
        for attempt in (preview, lambda s, cs: charge(s, _ctx(1), cs, "r1")):
            with pytest.raises(ShareExceeded) as refused:
                attempt(session, [other, capped])
            assert refused.value.extra["term"] == "disclosure.privacy.max_share_per_release"
            assert refused.value.extra["budget"]["max_share_per_release"] == 0.25
            assert refused.value.extra["budget"]["epsilon_limit"] == 4.0
            assert "max_share_per_release" in refused.value.detail
        # Refused before anything was written: no budget opened, the other one not charged.
        assert _stored(session) == ([], 0)
        # At the cap exactly, or without one, a charge goes through.
        charge(session, _ctx(2), [Charge("a", "d", "2026", 1.0, 4.0, max_share=0.25)], "r2")
        charge(session, _ctx(3), [Charge("a", "d", "2026", 1.5, 4.0)], "r3")
        session.commit()
    with committed() as session:
        assert _stored(session) == ([("a", "d", "2026", 4.0, 2.5)], 2)


def test_a_budget_follows_the_agreement_version_in_force(committed):
    # A budget opened at 4.0 follows a later version's 8.0 (the share is of that), and a
    # version that lowers it below what is spent leaves it exhausted, never overspent.
    with committed() as session:
        charge(session, _ctx(1), [Charge("a", "d", "2026", 1.0, 4.0)], "r1")
        session.commit()
    with committed() as session:
        later = Charge("a", "d", "2026", 2.0, 8.0, max_share=0.25)
        preview(session, [later])
        charge(session, _ctx(2), [later], "r2")
        session.commit()
        assert _stored(session) == ([("a", "d", "2026", 8.0, 3.0)], 2)
    with committed() as session:
        over = Charge("a", "d", "2026", 2.0, 4.0, max_share=0.25)  # 2.0 > 0.25 of 4.0
        with pytest.raises(ShareExceeded):
            preview(session, [over])
        with pytest.raises(ShareExceeded):
            charge(session, _ctx(3), [over], "r3")
        session.rollback()
        lowered = Charge("a", "d", "2026", 0.5, 2.0)
        with pytest.raises(BudgetExhausted) as refused:
            charge(session, _ctx(4), [lowered], "r4")
        assert refused.value.extra["budget"]["epsilon_limit"] == 3.0  # never below what is spent
        session.rollback()
        assert _stored(session) == ([("a", "d", "2026", 8.0, 3.0)], 2)


def test_a_preview_reads_the_figures_and_refuses_as_the_charge_would(committed):
    with committed() as session:
        charge(session, _ctx(1), [Charge("a", "d", "2026", 3.0, 4.0)], "r1")
        session.commit()
    with committed() as session:
        assert preview(session, [Charge("a", "d", "2026", 1.0, 4.0, 0.5)]) == [
            {
                "agreement": "a",
                "dataset": "d",
                "period": "2026",
                "epsilon": 1.0,
                "epsilon_limit": 4.0,
                "epsilon_spent": 3.0,
                "epsilon_remaining": 1.0,
                "epsilon_remaining_after": 0.0,
                "max_share_per_release": 0.5,
            }
        ]
        # A budget not opened yet is previewed as a new one would be.
        [fresh] = preview(session, [Charge("a", "d", "2027", 1.0, 4.0)])
        assert fresh["epsilon_spent"] == 0.0 and fresh["epsilon_remaining_after"] == 3.0
        too_much = [Charge("a", "d", "2026", 1.5, 4.0)]
        with pytest.raises(BudgetExhausted) as previewed:
            preview(session, too_much)
        with pytest.raises(BudgetExhausted) as charged:
            charge(session, _ctx(2), too_much, "r2")
        assert previewed.value.detail == charged.value.detail
        assert previewed.value.extra == charged.value.extra
        session.rollback()
        assert _stored(session) == ([("a", "d", "2026", 4.0, 3.0)], 1)


def test_periods():
    march, september = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)
    assert period_of("calendar_year", march) == "2026"
    assert (
        period_of("school_year", march) == "2025-26"
        and period_of("school_year", september) == "2026-27"
    )
    assert period_of("agreement_term", march) == "term"
