"""The backbone analysts' publication page: every release and its publication state (awaiting
its providers' review with each provider's answer and the window's end, published, objected),
which indicators are public (a link to the public page); and publishing what is due after a
confirmation, through :func:`aggregation.review.publish_due` (the cron job's), audited naming the
person, refused without the CSRF token or the confirmation, and out of a partner's reach."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from aggregation.models import Release
from audit.models import AuditEvent
from identity.models import Person
from tests.console.conftest import DemoPerson, sign_in


@pytest.fixture
def analyst(demo_people: dict[str, DemoPerson]) -> DemoPerson:
    return demo_people["blake.backbone"]


def _csrf(text: str) -> str:
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _person(session: Any, username: str) -> str:
    return "person:" + session.scalar(select(Person.id).where(Person.username == username))


def _held(api: Any) -> dict[str, Any]:
    r = api.post(
        "/v1/indicators/low-birth-weight/releases",
        as_="backbone-manager",
        json={"dimensions": ["birth_year"]},
    )
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    assert body["state"] == "pending_review"
    return body


def _row(text: str, release_id: str) -> str:
    found = re.search(rf"<tr>\s*<td><code>{release_id}</code>.*?</tr>", text, re.S)
    assert found, text
    return found.group(0)


def test_releases_and_their_publication_state_and_what_is_public(
    client, clock, analyst, api, session
):
    held = _held(api)
    sign_in(client, clock, analyst)
    assert 'href="/console/publication"' in client.get("/console").text
    page = client.get("/console/publication")
    assert page.status_code == 200, page.text
    row = _row(page.text, held["id"])
    assert "awaiting provider review" in row
    listed = api.get("/v1/indicators/low-birth-weight/releases", as_="backbone-manager").json()
    review = next(r for r in listed if r["id"] == held["id"])["review"]
    (reviewer,) = review["reviewers"]
    assert f"{reviewer['organization']}: no answer yet" in row
    assert reviewer["due_at"][:16].replace("T", " ") in row
    # Public indicators link to their public page; the others say they are not public.
    indicators = api.get("/v1/indicators", as_="backbone-manager").json()
    public = [i["id"] for i in indicators if "public" in i.get("recipients", [])]
    assert public
    for indicator in public:
        assert f'href="/indicators/{indicator}"' in page.text
    # The provider objects: the page says so, with the reason the requester may read.
    api.post(
        f"/v1/releases/{held['id']}/review/object",
        as_="health-data-manager",
        json={"reason": "The 2020 count looks wrong."},
    )
    row = _row(client.get("/console/publication").text, held["id"])
    assert "objected: never published" in row and "health: objected" in row


def test_what_is_due_is_published_after_a_confirmation(client, clock, analyst, api, session):
    held = _held(api)
    sign_in(client, clock, analyst)
    confirm = client.get("/console/publication/publish-due")
    assert confirm.status_code == 200, confirm.text
    assert "0 of them may be published now" in confirm.text
    assert "stays held" in confirm.text
    # The health agreement publishes when its 10-day window passes unanswered.
    clock.advance(days=11)
    sign_in(client, clock, analyst)
    confirm = client.get("/console/publication/publish-due")
    assert "1 of them may be published now" in confirm.text
    assert "would be published" in confirm.text
    # The preview changed nothing.
    session.expire_all()
    assert session.get(Release, held["id"]).state == "pending_review"
    csrf = _csrf(confirm.text)
    url = "/console/publication/publish-due"
    assert client.post(url, data={"csrf": "forged", "confirm": "publish"}).status_code == 403
    assert client.post(url, data={"csrf": csrf}).status_code == 422  # not confirmed
    r = client.post(url, data={"csrf": csrf, "confirm": "publish"})
    assert r.status_code == 200, r.text
    assert re.search(r"1 of \d+ held release\(s\) published", r.text)
    shown = api.get(f"/v1/releases/{held['id']}", as_="backbone-manager").json()
    assert shown["state"] == "published"
    session.expire_all()
    published = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "release.publish", AuditEvent.resource_id == held["id"]
        )
    ).one()
    assert published.client_id == _person(session, analyst.username)
    outcomes = list(
        session.scalars(
            select(AuditEvent.outcome)
            .where(AuditEvent.action == "release.publish", AuditEvent.resource_type == "release")
            .where(AuditEvent.resource_id.is_(None))
            .order_by(AuditEvent.idx)
        )
    )
    assert outcomes[:2] == ["denied", "rejected"]


def test_a_partner_reaches_none_of_it(client, clock, district, api, session):
    held = _held(api)
    clock.advance(days=11)  # due: only the run (or a read of it) would publish it
    sign_in(client, clock, district)
    assert client.get("/console/publication").status_code == 403
    assert client.get("/console/publication/publish-due").status_code == 403
    csrf = _csrf(client.get("/console").text)
    r = client.post("/console/publication/publish-due", data={"csrf": csrf, "confirm": "publish"})
    assert r.status_code == 403
    session.expire_all()
    assert session.get(Release, held["id"]).state == "pending_review"
