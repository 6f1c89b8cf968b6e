"""The webhook API, and the events the services emit where things happen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.models import AuditEvent
from notifications.models import NotificationEvent, WebhookDelivery
from tests.conftest import Api
from tests.records.test_submissions_api import csv, post

AGREEMENT = "district-early-learning-outcomes"


@pytest.fixture
def allowed(api_with) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    """The API with 127.0.0.1 allowed (where the tests' receivers listen)."""
    with api_with(webhook_allow_hosts="127.0.0.1") as api:
        yield api


def _problem(r: Any, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == f"/problems/{kind}"
    return body


def _register(api: Api, events: list[str], as_: str = "district-data-manager", **kw: Any) -> Any:
    return api.post(
        "/v1/webhooks",
        as_=as_,
        json={"url": "http://127.0.0.1:9/hook", "event_types": events, **kw},
    )


def test_register_list_read_delete_and_ownership(allowed: Api, session: Session) -> None:
    r = _register(allowed, ["agreement.suspended", "submission.accepted"])
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["secret"].startswith("whsec_") and made["organization"] == "district"
    hook = made["id"]
    listed = allowed.get("/v1/webhooks", as_="district-data-manager").json()
    assert [h["id"] for h in listed] == [hook]
    assert "secret" not in listed[0] or listed[0]["secret"] is None  # shown once only
    assert allowed.get(f"/v1/webhooks/{hook}", as_="district-data-manager").status_code == 200

    # Another organization's data manager: the answer a missing webhook gets.
    missing = _problem(
        allowed.get("/v1/webhooks/whk_nope", as_="health-data-manager"), 404, "not-found"
    )
    other = _problem(
        allowed.get(f"/v1/webhooks/{hook}", as_="health-data-manager"), 404, "not-found"
    )
    assert missing["detail"] == other["detail"]
    _problem(
        allowed.get(f"/v1/webhooks/{hook}/deliveries", as_="health-data-manager"), 404, "not-found"
    )
    _problem(allowed.delete(f"/v1/webhooks/{hook}", as_="health-data-manager"), 404, "not-found")
    assert allowed.get("/v1/webhooks", as_="health-data-manager").json() == []
    # The administrator sees and manages every organization's.
    assert hook in [h["id"] for h in allowed.get("/v1/webhooks", as_="backbone-admin").json()]

    r = allowed.delete(f"/v1/webhooks/{hook}", as_="district-data-manager")
    assert r.status_code == 200
    _problem(allowed.get(f"/v1/webhooks/{hook}", as_="district-data-manager"), 404, "not-found")
    actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.resource_id == hook)))
    assert {"webhook.create", "webhook.delete"} <= actions


def test_who_may_register(allowed: Api) -> None:
    for path in ("/v1/webhooks", "/v1/notifications"):
        _problem(allowed.get(path, as_="district-dashboard"), 403, "insufficient-scope")
    _problem(
        _register(allowed, ["release.published"], as_="district-sis"), 403, "insufficient-scope"
    )
    _problem(_register(allowed, ["release.published"], organization="health"), 403, "forbidden")
    r = _register(allowed, ["release.published"], as_="backbone-admin", organization="health")
    assert r.status_code == 201 and r.json()["organization"] == "health"
    _problem(
        _register(allowed, ["release.published"], as_="backbone-admin", organization="nobody"),
        404,
        "not-found",
    )
    body = _problem(_register(allowed, ["release.publishd"]), 422, "webhook-event-unknown")
    assert "release.published" in body["known"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/hook",
        "https://[::1]/hook",
        "https://localhost/hook",
    ],
)
def test_internal_urls_are_refused_without_the_allowance(api: Api, url: str) -> None:
    r = api.post(
        "/v1/webhooks",
        as_="district-data-manager",
        json={"url": url, "event_types": ["release.published"]},
    )
    body = _problem(r, 422, "webhook-url-refused")
    assert "allowed" in body["detail"] or "https" in body["detail"]
    assert api.get("/v1/webhooks", as_="district-data-manager").json() == []


def _events(session: Session, kind: str) -> list[NotificationEvent]:
    return list(
        session.scalars(
            select(NotificationEvent)
            .where(NotificationEvent.type == kind)
            .order_by(NotificationEvent.seq)
        )
    )


def _deliveries(api: Api, hook: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/webhooks/{hook}/deliveries", as_="district-data-manager")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_submissions_emit_accepted_and_rejected(allowed: Api, session: Session) -> None:
    hook = _register(allowed, ["submission.accepted", "submission.rejected"]).json()["id"]
    r = post(allowed, csv(3, prefix="WH"))
    assert r.status_code == 201, r.text
    bad = csv(2, prefix="WH").replace(b"Ashland,Asian,true", b"Ashland,Asian,maybe")
    assert post(allowed, bad).status_code == 422
    got = {d["event"]["type"]: d for d in _deliveries(allowed, hook)}
    accepted = got["submission.accepted"]["event"]["data"]
    assert accepted["submission"] == r.json()["id"] and accepted["row_count"] == 3
    assert accepted["agreement"]["id"] == AGREEMENT
    rejected = got["submission.rejected"]["event"]["data"]
    assert rejected["report"]["error_count"] == 1 and rejected["report"]["counts"] == {"type": 1}
    assert "errors" not in rejected["report"]  # rows and messages stay with the submitter
    assert "WH" not in str(got)  # no identifier, no value


def test_agreement_events(allowed: Api, session: Session) -> None:
    hook = _register(
        allowed, ["agreement.suspended", "agreement.terminated", "records.purged"]
    ).json()["id"]
    r = allowed.post(
        f"/v1/agreements/{AGREEMENT}/suspend", as_="district-data-manager", json={"reason": "x"}
    )
    assert r.status_code == 200
    assert (
        allowed.post(f"/v1/agreements/{AGREEMENT}/resume", as_="backbone-manager").status_code
        == 200
    )
    r = allowed.post(
        f"/v1/agreements/{AGREEMENT}/terminate", as_="backbone-manager", json={"reason": "end"}
    )
    assert r.status_code == 200
    kinds = [d["event"]["type"] for d in reversed(_deliveries(allowed, hook))]
    assert kinds == ["agreement.suspended", "agreement.terminated"]
    suspended = _deliveries(allowed, hook)[-1]["event"]["data"]
    assert suspended["agreement"]["id"] == AGREEMENT and suspended["by"] == "district"
    assert "reason" not in suspended


def test_an_agreement_awaiting_approval_is_notified_to_the_parties_yet_to_approve(
    allowed: Api, session: Session
) -> None:
    hook = _register(allowed, ["agreement.awaiting_approval"]).json()["id"]
    doc = allowed.get(f"/v1/agreements/{AGREEMENT}", as_="district-data-manager").json()
    assert doc  # the agreement exists; amend it to make a new version
    from agreements import repository

    latest = repository.versions(session, AGREEMENT)[-1]
    document = dict(latest.document)
    document["title"] = document["title"] + " (amended)"
    r = allowed.post("/v1/agreements", as_="backbone-manager", json=document)
    assert r.status_code == 201, r.text
    version = r.json()["version"]
    (first,) = [d for d in _deliveries(allowed, hook)]
    assert first["event"]["data"]["awaiting"] == ["backbone", "district"]
    r = allowed.post(
        f"/v1/agreements/{AGREEMENT}/approve",
        as_="backbone-manager",
        json={"version": version, "content_hash": r.json()["content_hash"]},
    )
    assert r.status_code == 200, r.text
    second = _deliveries(allowed, hook)[0]["event"]["data"]
    assert second["awaiting"] == ["district"] and second["approved_by"] == ["backbone"]


def test_releases_and_budgets(allowed: Api, session: Session) -> None:
    hook = _register(
        allowed, ["release.published", "budget.threshold_reached", "budget.exhausted"]
    ).json()["id"]
    # The district agreement: epsilon 1.0 per release, 4.0 per school year.
    for dims in (
        ["school_year"],
        ["neighborhood"],
        ["race_ethnicity"],
        ["school_year", "race_ethnicity"],
    ):
        r = allowed.post(
            "/v1/indicators/kindergarten-readiness/releases",
            as_="backbone-manager",
            json={"dimensions": dims, "method": "differential_privacy"},
        )
        assert r.status_code == 201, r.text
    kinds = [d["event"]["type"] for d in reversed(_deliveries(allowed, hook))]
    assert kinds.count("release.published") == 4
    assert "budget.threshold_reached" in kinds and "budget.exhausted" in kinds
    assert kinds.index("budget.threshold_reached") < kinds.index("budget.exhausted")
    exhausted = next(
        d for d in _deliveries(allowed, hook) if d["event"]["type"] == "budget.exhausted"
    )["event"]["data"]
    assert exhausted["epsilon_spent"] == pytest.approx(exhausted["epsilon_limit"])


def test_replay_through_the_api_and_the_notification_log(allowed: Api, session: Session) -> None:
    hook = _register(allowed, ["agreement.suspended"]).json()["id"]
    allowed.post(f"/v1/agreements/{AGREEMENT}/suspend", as_="district-data-manager", json={})
    (delivery,) = _deliveries(allowed, hook)
    assert delivery["state"] == "pending"
    _problem(
        allowed.post(
            f"/v1/webhooks/{hook}/deliveries/{delivery['id']}/replay", as_="district-data-manager"
        ),
        409,
        "delivery-not-replayable",
    )
    row = session.get(WebhookDelivery, delivery["id"])
    assert row is not None
    row.state = "failed"
    session.commit()
    _problem(
        allowed.post(
            f"/v1/webhooks/{hook}/deliveries/{delivery['id']}/replay", as_="health-data-manager"
        ),
        404,
        "not-found",
    )
    r = allowed.post(
        f"/v1/webhooks/{hook}/deliveries/{delivery['id']}/replay", as_="district-data-manager"
    )
    assert r.status_code == 200 and r.json()["state"] == "pending"
    # The replay, and the two refusals before it, are in the access log.
    outcomes = session.scalars(
        select(AuditEvent.outcome)
        .where(AuditEvent.resource_id == delivery["id"], AuditEvent.action == "webhook.replay")
        .order_by(AuditEvent.idx)
    ).all()
    assert outcomes == ["rejected", "rejected", "succeeded"]
    log = allowed.get("/v1/notifications", as_="district-data-manager").json()["items"]
    assert delivery["id"] in [d["id"] for d in log]
    assert delivery["id"] not in [
        d["id"] for d in allowed.get("/v1/notifications", as_="health-data-manager").json()["items"]
    ]


def test_a_purge_is_notified(allowed: Api, session: Session, clock: Any) -> None:
    from datetime import timedelta

    from core.context import RequestContext
    from records import retention

    hook = _register(allowed, ["records.purged"]).json()["id"]
    r = allowed.post(
        f"/v1/agreements/{AGREEMENT}/terminate", as_="backbone-manager", json={"reason": "end"}
    )
    assert r.status_code == 200
    later = clock.now + timedelta(days=400)
    report = retention.purge(session, RequestContext("purge", later, None), later)
    assert report.agreements
    session.commit()
    (purged,) = [
        d for d in _deliveries(allowed, hook) if d["event"]["data"]["scope"] == "agreement"
    ]
    data = purged["event"]["data"]
    assert data["agreement"]["id"] == AGREEMENT and data["reason"] == "terminated"
    assert data["submissions"] >= 1


def test_an_agreement_expiring_within_60_days_is_notified_once(
    allowed: Api, session: Session
) -> None:
    from datetime import timedelta

    from agreements import repository
    from agreements.service import notify_expiring

    hook = _register(allowed, ["agreement.expiring"]).json()["id"]
    expires = repository.versions(session, AGREEMENT)[-1].expires_at

    def mine() -> list[dict[str, Any]]:
        return [
            d
            for d in _deliveries(allowed, hook)
            if d["event"]["data"]["agreement"]["id"] == AGREEMENT
        ]

    notify_expiring(session, expires - timedelta(days=61))
    assert mine() == []
    assert notify_expiring(session, expires - timedelta(days=30)) >= 1
    assert notify_expiring(session, expires - timedelta(days=29)) == 0  # once per version
    session.commit()
    (got,) = mine()
    assert got["event"]["data"] == {
        "agreement": {"id": AGREEMENT, "version": 1},
        "expires_at": expires.isoformat(),
        "days_left": 30,
    }


def test_a_review_is_notified_held_decided_then_published(allowed: Api, session: Session) -> None:
    """Under the health agreement's review: the reviewer hears the release awaits it, every
    party hears the decision, and "published" comes when the release becomes readable."""
    from tests.indicators.test_review import _held, _submit_births

    kinds = ["release.awaiting_review", "review.decided", "release.published"]
    health = _register(allowed, kinds, as_="health-data-manager").json()["id"]
    backbone = _register(allowed, kinds, as_="backbone-manager").json()["id"]
    _submit_births(allowed)
    release = _held(allowed)["id"]

    def seen(hook: str, as_: str) -> list[str]:
        r = allowed.get(f"/v1/webhooks/{hook}/deliveries", as_=as_)
        assert r.status_code == 200, r.text
        return [
            d["event"]["type"]
            for d in reversed(r.json()["items"])
            if d["event"]["data"].get("release") == release
        ]

    assert seen(health, "health-data-manager") == ["release.awaiting_review"]
    assert seen(backbone, "backbone-manager") == []  # not a reviewer; nothing is readable yet
    r = allowed.post(f"/v1/releases/{release}/review/approve", as_="health-data-manager", json={})
    assert r.status_code == 200, r.text
    assert seen(health, "health-data-manager") == [
        "release.awaiting_review",
        "review.decided",
        "release.published",
    ]
    assert seen(backbone, "backbone-manager") == ["review.decided", "release.published"]
    decided = next(
        e for e in _events(session, "review.decided") if e.data.get("release") == release
    )
    assert decided.data["organization"] == "health" and decided.data["decision"] == "approve"
    assert "reason" not in decided.data
