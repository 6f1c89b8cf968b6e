"""The data managers' webhooks in the console: the API's services (the same address checks,
the same audit events), the secret shown once, deletion after a confirmation, deliveries with
their state, attempts and next retry, replay; another organization's webhook answered as a
missing one whatever the URL says; every form refused without the session's CSRF token."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from audit.models import AuditEvent
from identity.models import Person
from notifications.models import WebhookDelivery
from tests.conftest import Api
from tests.console.conftest import DemoPerson, sign_in

AGREEMENT = "district-early-learning-outcomes"
HOOK_URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def allowed(api_with: Any) -> Iterator[Api]:
    """The service with 127.0.0.1 allowed as a webhook address (as the webhook API tests)."""
    with api_with(webhook_allow_hosts="127.0.0.1") as api:
        yield api


@pytest.fixture
def health(demo_people: dict[str, DemoPerson]) -> DemoPerson:
    return demo_people["hector.health"]


def _csrf(text: str) -> str:
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _person(session: Any, username: str) -> str:
    return "person:" + session.scalar(select(Person.id).where(Person.username == username))


def _events(session: Any, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.idx)
        )
    )


def _register(web: Any, csrf: str, events: list[str], url: str = HOOK_URL) -> Any:
    form: dict[str, Any] = {
        "csrf": csrf,
        "url": url,
        "description": "Our intake system",
        "event_types": events,
    }
    return web.post("/console/webhooks", data=form)


def test_a_webhook_is_registered_with_its_secret_shown_once_and_listed(
    allowed, clock, district, session
):
    web = allowed.client
    sign_in(web, clock, district)
    assert 'href="/console/webhooks"' in web.get("/console").text
    listing = web.get("/console/webhooks")
    assert listing.status_code == 200, listing.text
    assert "No webhook yet." in listing.text
    r = _register(web, _csrf(listing.text), ["agreement.suspended", "submission.accepted"])
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    secret = html.unescape(re.search(r'<code id="webhook-secret">([^<]+)</code>', r.text).group(1))
    assert secret.startswith("whsec_")
    (hook,) = allowed.get("/v1/webhooks", as_="district-data-manager").json()
    assert hook["url"] == HOOK_URL
    assert hook["event_types"] == ["agreement.suspended", "submission.accepted"]
    listing = web.get("/console/webhooks")
    assert f'href="/console/webhooks/{hook["id"]}"' in listing.text
    assert secret not in listing.text
    assert secret not in web.get(f"/console/webhooks/{hook['id']}").text
    (event,) = _events(session, "webhook.create")
    assert event.client_id == _person(session, district.username)
    assert event.resource_id == hook["id"] and event.outcome == "succeeded"


def test_a_refused_address_or_event_is_a_problem_page_and_nothing_is_stored(
    allowed, clock, district, session
):
    web = allowed.client
    sign_in(web, clock, district)
    csrf = _csrf(web.get("/console/webhooks").text)
    # Not public and not allowed: the API's address check refuses it.
    r = _register(web, csrf, ["agreement.suspended"], url="http://10.1.2.3/hook")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("text/html")
    r = _register(web, csrf, ["no.such_event"])
    assert r.status_code == 422, r.text
    assert "Unknown event type" in r.text
    assert _register(web, csrf, []).status_code == 422
    assert allowed.get("/v1/webhooks", as_="district-data-manager").json() == []


def test_deliveries_with_state_attempts_and_next_retry_and_a_replay(
    allowed, clock, district, session
):
    web = allowed.client
    sign_in(web, clock, district)
    r = _register(web, _csrf(web.get("/console/webhooks").text), ["agreement.suspended"])
    hook = allowed.get("/v1/webhooks", as_="district-data-manager").json()[0]["id"]
    allowed.post(f"/v1/agreements/{AGREEMENT}/suspend", as_="district-data-manager", json={})
    page = web.get(f"/console/webhooks/{hook}")
    assert page.status_code == 200, page.text
    (delivery,) = allowed.get(
        f"/v1/webhooks/{hook}/deliveries", as_="district-data-manager"
    ).json()["items"]
    table = re.search(r'<table class="events" id="deliveries">.*?</table>', page.text, re.S)
    assert table and "agreement.suspended" in table.group(0)
    assert "<td>pending</td>" in table.group(0)
    assert delivery["next_attempt_at"][:19].replace("T", " ") in table.group(0)
    # A pending delivery is not offered for replay; the API refuses it, and so does the form.
    assert "Send again" not in page.text
    url = f"/console/webhooks/{hook}/deliveries/{delivery['id']}/replay"
    r = web.post(url, data={"csrf": _csrf(page.text)})
    assert r.status_code == 409, r.text
    row = session.get(WebhookDelivery, delivery["id"])
    row.state, row.attempts, row.last_status_code = "failed", 8, 500
    row.last_attempt_at, row.next_attempt_at = clock(), None
    session.commit()
    page = web.get(f"/console/webhooks/{hook}")
    assert "<td>failed</td>" in page.text and "<td>8</td>" in page.text
    assert "HTTP 500" in page.text and "Send again" in page.text
    assert web.post(url, data={"csrf": "forged"}).status_code == 403
    r = web.post(url, data={"csrf": _csrf(page.text)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert "queued to be sent again" in web.get(r.headers["location"]).text
    shown = allowed.get(f"/v1/webhooks/{hook}/deliveries", as_="district-data-manager").json()
    assert shown["items"][0]["state"] == "pending" and shown["items"][0]["attempts"] == 0
    outcomes = [e.outcome for e in _events(session, "webhook.replay")]
    assert outcomes == ["rejected", "denied", "succeeded"]
    assert _events(session, "webhook.replay")[-1].client_id == _person(session, district.username)


def test_deletion_asks_for_a_confirmation_and_needs_the_csrf_token(
    allowed, clock, district, session
):
    web = allowed.client
    sign_in(web, clock, district)
    _register(web, _csrf(web.get("/console/webhooks").text), ["agreement.suspended"])
    hook = allowed.get("/v1/webhooks", as_="district-data-manager").json()[0]["id"]
    confirm = web.get(f"/console/webhooks/{hook}/delete")
    assert confirm.status_code == 200, confirm.text
    assert "Nothing more is sent to this address" in confirm.text
    assert f'action="/console/webhooks/{hook}/delete"' in confirm.text
    csrf = _csrf(confirm.text)
    url = f"/console/webhooks/{hook}/delete"
    assert web.post(url, data={"csrf": "", "confirm": "delete"}).status_code == 403
    assert web.post(url, data={"csrf": csrf}).status_code == 422  # the box is not ticked
    assert len(allowed.get("/v1/webhooks", as_="district-data-manager").json()) == 1
    r = web.post(url, data={"csrf": csrf, "confirm": "delete"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert "The webhook is deleted" in web.get(r.headers["location"]).text
    assert allowed.get("/v1/webhooks", as_="district-data-manager").json() == []
    assert [e.outcome for e in _events(session, "webhook.delete")] == [
        "denied",
        "rejected",
        "succeeded",
    ]


def test_another_organizations_webhook_is_answered_as_a_missing_one(
    allowed, clock, district, health, session
):
    made = allowed.post(
        "/v1/webhooks",
        as_="district-data-manager",
        json={"url": HOOK_URL, "event_types": ["agreement.suspended"]},
    )
    assert made.status_code == 201, made.text
    hook = made.json()["id"]
    allowed.post(f"/v1/agreements/{AGREEMENT}/suspend", as_="district-data-manager", json={})
    (delivery,) = allowed.get(
        f"/v1/webhooks/{hook}/deliveries", as_="district-data-manager"
    ).json()["items"]
    web = allowed.client
    sign_in(web, clock, health)
    listing = web.get("/console/webhooks")
    assert hook not in listing.text
    csrf = _csrf(listing.text)
    missing = web.get("/console/webhooks/whk_none")
    assert missing.status_code == 404
    for r in (
        web.get(f"/console/webhooks/{hook}"),
        web.get(f"/console/webhooks/{hook}/delete"),
        web.post(f"/console/webhooks/{hook}/delete", data={"csrf": csrf, "confirm": "delete"}),
        web.post(
            f"/console/webhooks/{hook}/deliveries/{delivery['id']}/replay", data={"csrf": csrf}
        ),
    ):
        assert r.status_code == 404, r.text
        assert "No such webhook." in r.text
        assert HOOK_URL not in r.text
    assert len(allowed.get("/v1/webhooks", as_="district-data-manager").json()) == 1


def test_people_without_the_data_managers_scope_are_refused(allowed, clock, demo_people):
    web = allowed.client
    sign_in(web, clock, demo_people["sam.sis"])
    assert web.get("/console/webhooks").status_code == 403
    assert 'href="/console/webhooks"' not in web.get("/console").text
