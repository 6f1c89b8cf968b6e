"""The data managers' "what if" form: the decision of ``POST /v1/policy/decide`` for the same
question (its effect, explanation, deciding rules and failed constraints, expected against
actual), audited as the API's is, naming the person; nothing is done; another organization's
client cannot be asked about by editing the URL."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import func, select

from audit.models import AuditEvent
from identity.models import Person
from records.models import Submission
from tests.console.conftest import sign_in

AGREEMENT = "district-early-learning-outcomes"
DATASET = "kindergarten_readiness"


def _person(session: Any, username: str) -> str:
    return "person:" + session.scalar(select(Person.id).where(Person.username == username))


def _explanation(text: str) -> str:
    found = re.search(r'<p id="explanation">(.*?)</p>', text, re.S)
    assert found, text
    return html.unescape(found.group(1))


def _ask(client: Any, **form: str) -> Any:
    return client.get("/console/what-if?" + urlencode(form))


def _api(api: Any, client_id: str | None, action: str, **resource: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"action": action, "resource": resource}
    if client_id:
        body["client_id"] = client_id
    r = api.post("/v1/policy/decide", as_="district-data-manager", json=body)
    assert r.status_code == 200, r.text
    decision: dict[str, Any] = r.json()["decision"]
    return decision


def test_the_form_shows_the_engines_decision_for_the_same_question(
    client, clock, district, api, session
):
    sign_in(client, clock, district)
    assert 'href="/console/what-if"' in client.get("/console").text
    empty = client.get("/console/what-if")
    assert empty.status_code == 200, empty.text
    assert 'id="decision"' not in empty.text
    sis = api.credentials["district-sis"]["client_id"]
    before = session.scalar(select(func.count()).select_from(Submission))

    r = _ask(client, action="submit", agreement=AGREEMENT, datasets=DATASET, client_id=sis)
    assert r.status_code == 200, r.text
    # The form also lists the agreements (an audited read): the decision is the last decide.
    event = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "policy.decide")
        .order_by(AuditEvent.idx.desc())
        .limit(1)
    ).one()
    assert event.decision == "permit"
    assert event.client_id == _person(session, district.username)
    expected = _api(api, sis, "submit", agreement=AGREEMENT, datasets=[DATASET])
    assert expected["effect"] == "permit"
    assert "Permitted by the agreements" in r.text
    assert _explanation(r.text) == expected["explanation"]
    for rule in expected["deciding_rules"]:
        assert f"<code>{rule['rule']}</code>" in r.text

    # A question the agreements refuse: its reasons, expected against actual.
    r = _ask(
        client,
        action="compute",
        agreement=AGREEMENT,
        datasets=DATASET,
        geography="address",
        purpose="dpv:ServiceProvision",
    )
    assert r.status_code == 200, r.text
    expected = _api(
        api, None, "compute", agreement=AGREEMENT, datasets=[DATASET], geography="address"
    )
    assert "Denied by the agreements" in r.text
    assert expected["effect"] == "deny"
    assert _explanation(r.text) == expected["explanation"]
    failed = re.search(r'<table class="events" id="failed-constraints">.*?</table>', r.text, re.S)
    assert expected["failed_constraints"] and failed
    for f in expected["failed_constraints"]:
        assert f"<code>{f['rule']}</code>" in failed.group(0)
    # The form keeps the question, to ask again.
    assert '<option value="address" selected>' in r.text
    # Nothing was done.
    assert session.scalar(select(func.count()).select_from(Submission)) == before


def test_a_question_about_another_organizations_client_is_refused(
    client, clock, district, api, session
):
    sign_in(client, clock, district)
    vitals = api.credentials["health-vitals"]["client_id"]
    r = _ask(client, action="submit", datasets="birth_records", client_id=vitals)
    assert r.status_code == 403, r.text
    assert "your own organization&#39;s clients only" in r.text
    event = session.scalars(select(AuditEvent).order_by(AuditEvent.idx.desc()).limit(1)).one()
    assert (event.action, event.outcome) == ("policy.decide", "denied")


def test_a_bad_question_is_a_clear_page(client, clock, district):
    sign_in(client, clock, district)
    r = _ask(client, action="fly", datasets=DATASET)
    assert r.status_code == 422 and "Choose an action" in r.text
    r = _ask(client, action="compute")
    assert r.status_code == 422 and "Name an agreement or at least one dataset" in r.text
    r = _ask(client, action="compute", datasets=DATASET, at="2026-01-01T00:00")
    assert r.status_code == 422, r.text
    r = _ask(client, action="compute", datasets=DATASET, geography="planet")
    assert r.status_code == 422 and "geography" in r.text


def test_partner_staff_cannot_ask(client, clock, demo_people):
    sign_in(client, clock, demo_people["sam.sis"])
    assert client.get("/console/what-if?action=submit&datasets=x").status_code == 403
