"""The agreement's withdrawal terms are enforced: ``allowed: false`` refuses a withdrawal and
changes nothing; ``notice_days`` schedules it, the submission stays in every release's scope
until the effective time and leaves it exactly then, and the purge shreds it after the grace
period counted from that time. The agreement acting (termination, suspension) still stops use
at once."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from aggregation.models import Release
from agreements import service as agreements
from audit.actions import AuditAction
from audit.models import AuditEvent
from core.context import RequestContext
from records import retention, service
from records.models import Segment, Submission
from tests.records.helpers import agreement_document, as_manager, make_agreement

DISTRICT = "district-early-learning-outcomes"
KR = "kindergarten_readiness"
URL = f"/v1/datasets/{KR}/submissions"
HEADER = "student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"
SURVEY = (
    "person_id,school_year,score\n" + "".join(f"WT{i:06d},2025-26,{i}.5\n" for i in range(12))
).encode()


def kr_csv(prefix: str, n: int = 12) -> bytes:
    return (
        HEADER
        + "".join(
            f"{prefix}{i:08d},2025-26,Ashland,Asian,{'true' if i % 2 else 'false'},{i}\n"
            for i in range(n)
        )
    ).encode()


def submit_kr(api, prefix: str) -> str:
    r = api.post(
        URL, as_="district-sis", content=kr_csv(prefix), headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def scope(session, dataset: str, agreement: str, now: datetime) -> set[str]:
    return {s.id for s in service.in_scope(session, dataset, frozenset({agreement}), now)}


def events(session, action: str, resource_id: str) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.resource_id == resource_id)
            .order_by(AuditEvent.idx)
        )
    )


def later(api, clock, **delta: float) -> None:
    """Move the service's clock; tokens issued before have expired by then."""
    clock.advance(**delta)
    api._tokens.clear()


def purge_ctx(now: datetime) -> RequestContext:
    return RequestContext("purge-test", now, None)


@pytest.fixture
def survey_agreement(session, clock):
    """A custom agreement for the district's 'survey' dataset with given withdrawal terms."""

    def make(withdrawal: dict, grace_days: int = 10) -> str:
        uid = "withdrawal-" + os.urandom(3).hex()
        doc = agreement_document(uid, grace_days=grace_days, withdrawal=withdrawal)
        make_agreement(session, doc, clock())
        return uid

    return make


# -- withdrawal.allowed: false ------------------------------------------------------------------


def test_withdrawal_not_allowed_is_refused_and_changes_nothing(
    api, session, clock, submit_file, survey_agreement
):
    uid = survey_agreement({"allowed": False, "notice_days": 0})
    sid = submit_file(SURVEY, dataset="survey").submission_id
    before = api.get(f"/v1/submissions/{sid}", as_="district-sis").json()

    r = api.delete(f"/v1/submissions/{sid}", as_="district-sis")
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == "/problems/withdrawal-not-allowed"
    assert f"Agreement {uid} v1" in body["detail"] and "withdrawal.allowed" in body["detail"]
    assert "WT0" not in r.text  # no record value

    # Nothing changed: the receipt, the row and the scope are as they were.
    assert api.get(f"/v1/submissions/{sid}", as_="district-sis").json() == before
    session.expire_all()
    row = session.get(Submission, sid)
    assert (row.status, row.withdrawn_at, row.withdrawal_effective_at) == ("accepted", None, None)
    assert sid in scope(session, "survey", uid, clock() + timedelta(days=365))
    # The refusal is audited like other refusals: denied, under submission.withdraw.
    refused = events(session, AuditAction.SUBMISSION_WITHDRAW, sid)
    assert [(e.outcome, e.detail) for e in refused] == [("denied", "withdrawal-not-allowed")]
    # And no purge ever treats it as withdrawn.
    far = clock() + timedelta(days=3650)
    assert not retention.purge(session, purge_ctx(far), far).submissions


def test_an_amendment_that_allows_withdrawal_governs_earlier_submissions(
    api, session, clock, submit_file, survey_agreement
):
    uid = survey_agreement({"allowed": False})
    sid = submit_file(SURVEY, dataset="survey").submission_id
    amended = agreement_document(uid, grace_days=10, withdrawal={"allowed": True, "notice_days": 0})
    assert make_agreement(session, amended | {"title": "Amended"}, clock()) == 2
    r = api.delete(f"/v1/submissions/{sid}", as_="district-sis")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "withdrawn"
    assert sid not in scope(session, "survey", uid, clock())


# -- notice_days: 0 and > 0 -----------------------------------------------------------------------


def test_without_notice_a_withdrawal_is_immediate(
    api, session, clock, submit_file, survey_agreement
):
    uid = survey_agreement({"allowed": True, "notice_days": 0})
    sid = submit_file(SURVEY, dataset="survey").submission_id
    r = api.delete(f"/v1/submissions/{sid}", as_="district-sis")
    assert r.status_code == 200, r.text
    receipt = r.json()
    now = clock().isoformat()
    assert receipt["status"] == "withdrawn"
    assert receipt["withdrawal"] == {"requested_at": now, "effective_at": now, "state": "effective"}
    assert sid not in scope(session, "survey", uid, clock())
    [event] = events(session, AuditAction.SUBMISSION_WITHDRAW, sid)
    assert event.outcome == "succeeded" and "at once" in event.detail


def test_notice_days_schedule_the_withdrawal(api, session, clock):
    """The demo district agreement gives 30 days' notice."""
    sid = submit_kr(api, "WS")
    requested = clock()
    effective = requested + timedelta(days=30)

    r = api.delete(f"/v1/submissions/{sid}", as_="district-sis")
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["status"] == "accepted"
    assert receipt["withdrawal"] == {
        "requested_at": requested.isoformat(),
        "effective_at": effective.isoformat(),
        "state": "scheduled",
    }
    assert api.get(f"/v1/submissions/{sid}", as_="district-sis").json() == receipt
    listed = api.get("/v1/submissions", as_="district-sis", params={"dataset": KR}).json()
    assert next(s for s in listed["items"] if s["id"] == sid)["withdrawal"]["state"] == "scheduled"
    [event] = events(session, AuditAction.SUBMISSION_WITHDRAW, sid)
    assert event.outcome == "succeeded"
    assert "scheduled" in event.detail and effective.isoformat() in event.detail
    assert "notice_days 30" in event.detail

    # Asking again says when it takes effect, and changes nothing.
    r = api.delete(f"/v1/submissions/{sid}", as_="district-sis")
    assert r.status_code == 409 and r.json()["type"] == "/problems/conflict"
    assert effective.isoformat() in r.json()["detail"]
    # A submission being withdrawn cannot be replaced (that would end its use at once).
    r = api.post(
        URL + f"?replaces={sid}",
        as_="district-sis",
        content=kr_csv("WR"),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/replacement-invalid"

    # Once the notice has run out, the receipt says withdrawn, before any purge has run.
    later(api, clock, days=30)
    receipt = api.get(f"/v1/submissions/{sid}", as_="district-sis").json()
    assert receipt["status"] == "withdrawn" and receipt["withdrawal"]["state"] == "effective"
    r = api.delete(f"/v1/submissions/{sid}", as_="district-sis")
    assert r.status_code == 409 and "already withdrawn" in r.json()["detail"]


def test_a_scheduled_withdrawal_leaves_scope_exactly_at_its_effective_time(api, session, clock):
    sid = submit_kr(api, "WE")
    kept = submit_kr(api, "WK")
    assert api.delete(f"/v1/submissions/{sid}", as_="district-sis").status_code == 200
    effective = clock() + timedelta(days=30)
    tick = timedelta(microseconds=1)
    assert {sid, kept} <= scope(session, KR, DISTRICT, clock())
    assert {sid, kept} <= scope(session, KR, DISTRICT, effective - tick)
    assert kept in scope(session, KR, DISTRICT, effective)
    assert sid not in scope(session, KR, DISTRICT, effective)


@pytest.mark.slow
def test_releases_use_it_until_the_effective_time_and_not_after(api, session, clock):
    sid = submit_kr(api, "WL")
    assert api.delete(f"/v1/submissions/{sid}", as_="district-sis").status_code == 200

    def released() -> list[str]:
        r = api.post(
            "/v1/indicators/kindergarten-enrollment/releases",
            as_="backbone-manager",
            json={"dimensions": ["school_year"]},
        )
        assert r.status_code in (200, 201), r.text
        release = session.get(Release, r.headers["location"].rsplit("/", 1)[1])
        return release.provenance["submissions"]

    later(api, clock, days=29, hours=23)
    assert sid in released()
    later(api, clock, hours=1)
    after = released()
    assert sid not in after and after


def test_purge_records_the_effect_then_shreds_after_the_grace_period(api, session, clock):
    sid = submit_kr(api, "WP")
    assert api.delete(f"/v1/submissions/{sid}", as_="district-sis").status_code == 200
    effective = clock() + timedelta(days=30)
    grace = timedelta(days=30)  # the district agreement's retention.grace_period_days

    report = retention.purge(session, purge_ctx(effective), effective - timedelta(seconds=1))
    assert report.withdrawals == [] and session.get(Submission, sid).status == "accepted"
    assert events(session, AuditAction.SUBMISSION_WITHDRAWAL_EFFECTIVE, sid) == []

    run = effective + timedelta(days=2)  # the run notices a little late: no matter
    report = retention.purge(session, purge_ctx(run), run)
    assert [w["submission"] for w in report.withdrawals] == [sid]
    row = session.get(Submission, sid)
    assert (row.status, row.withdrawn_at) == ("withdrawn", effective)
    assert session.get(Segment, sid) is not None  # the grace period has just begun
    [event] = events(session, AuditAction.SUBMISSION_WITHDRAWAL_EFFECTIVE, sid)
    assert effective.isoformat() in event.detail and event.counts == {"rows": 12}

    end = effective + grace
    report = retention.purge(session, purge_ctx(end), end - timedelta(seconds=1))
    assert sid not in {s["submission"] for s in report.submissions} and not report.withdrawals
    report = retention.purge(session, purge_ctx(end), end)
    assert [(s["submission"], s["reason"]) for s in report.submissions] == [(sid, "withdrawn")]
    assert session.get(Submission, sid).status == "purged"
    assert session.get(Segment, sid) is None
    assert len(events(session, AuditAction.SUBMISSION_PURGE, sid)) == 1


def test_a_purge_long_after_the_effective_time_records_and_shreds_in_one_run(api, session, clock):
    sid = submit_kr(api, "WQ")
    assert api.delete(f"/v1/submissions/{sid}", as_="district-sis").status_code == 200
    run = clock() + timedelta(days=60)
    report = retention.purge(session, purge_ctx(run), run)
    assert [w["submission"] for w in report.withdrawals] == [sid]
    assert [s["submission"] for s in report.submissions] == [sid]
    effective_event = events(session, AuditAction.SUBMISSION_WITHDRAWAL_EFFECTIVE, sid)
    purge_event = events(session, AuditAction.SUBMISSION_PURGE, sid)
    assert effective_event[0].idx < purge_event[0].idx


# -- cancelling a scheduled withdrawal ----------------------------------------------------------


def test_a_scheduled_withdrawal_can_be_cancelled_before_it_takes_effect(api, session, clock):
    sid = submit_kr(api, "WC")
    r = api.delete(f"/v1/submissions/{sid}/withdrawal", as_="district-sis")
    assert r.status_code == 409 and "No withdrawal" in r.json()["detail"]
    assert api.delete(f"/v1/submissions/{sid}", as_="district-sis").status_code == 200
    problem = api.delete(f"/v1/submissions/{sid}/withdrawal", as_="health-vitals")
    assert problem.status_code == 403
    assert problem.json()["type"] == "/problems/object-access-denied"

    later(api, clock, days=29)
    r = api.delete(f"/v1/submissions/{sid}/withdrawal", as_="district-sis")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["withdrawal"]) == ("accepted", None)
    cancels = events(session, AuditAction.SUBMISSION_WITHDRAWAL_CANCEL, sid)
    # The two refusals above are on record too: rejected (nothing to cancel), then denied.
    assert [e.outcome for e in cancels] == ["rejected", "denied", "succeeded"]
    far = clock() + timedelta(days=365)
    assert sid in scope(session, KR, DISTRICT, far)
    assert not retention.purge(session, purge_ctx(far), far).withdrawals

    # Asked again, it runs its full notice from the new request; once effective, it is final.
    assert api.delete(f"/v1/submissions/{sid}", as_="district-sis").status_code == 200
    later(api, clock, days=30)
    r = api.delete(f"/v1/submissions/{sid}/withdrawal", as_="district-sis")
    assert r.status_code == 409 and "already withdrawn" in r.json()["detail"]
    assert sid not in scope(session, KR, DISTRICT, clock())


# -- the agreement acting stops use at once ------------------------------------------------------


@pytest.mark.parametrize("action", ["terminate", "suspend"])
def test_the_agreement_ending_stops_use_at_once_despite_a_notice(api, session, clock, action):
    sid = submit_kr(api, "WT")
    assert api.delete(f"/v1/submissions/{sid}", as_="district-sis").status_code == 200
    agreements.change_status(session, as_manager("district", clock()), DISTRICT, action, "test")
    session.flush()
    # No release may use the district's records any more, though the notice has 30 days to run.
    r = api.post(
        "/v1/indicators/kindergarten-enrollment/releases",
        as_="backbone-manager",
        json={"dimensions": ["school_year"]},
    )
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "/problems/invalid-indicator"
    assert "No agreement in force" in r.json()["detail"]
    if action == "terminate":
        # And the agreement's end, not the withdrawal, decides when the data is destroyed.
        end = clock() + timedelta(days=30)
        report = retention.purge(session, purge_ctx(end), end)
        assert DISTRICT in [a["agreement"] for a in report.agreements]
        assert session.get(Submission, sid).status == "purged"
