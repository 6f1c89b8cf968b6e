"""The data managers' console: their organization's agreements in plain language, a diff of two
versions, approval of the exact content hash, suspension and termination, the releases awaiting
their review, their privacy budgets; through the services the API calls, every view audited
naming the person, and another organization's agreement or release refused as the API refuses
it, whatever the URL or the form says."""

from __future__ import annotations

import copy
import html
import json
import re
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from audit.models import AuditEvent
from identity.models import Person
from tests.console.conftest import DemoPerson, sign_in
from tests.indicators.test_review import _submit_births

DISTRICT = "district-early-learning-outcomes"
HEALTH = "health-birth-outcomes"


@pytest.fixture
def health(demo_people: dict[str, DemoPerson]) -> DemoPerson:
    return demo_people["hector.health"]


def _person(session, username: str) -> str:
    return "person:" + session.scalar(select(Person.id).where(Person.username == username))


def _last_events(session, n: int = 5) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.idx.desc()).limit(n)))


def _csrf(text: str) -> str:
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _draft(api: Any, agreement: str, change: Any) -> dict[str, Any]:
    """A new version of ``agreement`` drafted by the backbone through the API."""
    current = api.get(f"/v1/agreements/{agreement}", as_="backbone-manager").json()
    latest = max(v["version"] for v in current["versions"])
    shown = api.get(f"/v1/agreements/{agreement}/versions/{latest}", as_="backbone-manager")
    doc = copy.deepcopy(shown.json()["document"])
    change(doc)
    r = api.post(
        "/v1/agreements",
        as_="backbone-manager",
        content=yaml.safe_dump(doc).encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 201, r.text
    version: dict[str, Any] = r.json()
    return version


def _bigger_cells(doc: dict[str, Any]) -> None:
    doc["disclosure"]["min_cell_size"] = 20
    doc["clauses"]["purpose"] = "A narrower purpose for the new version."


def _held_release(api: Any) -> dict[str, Any]:
    r = api.post(
        "/v1/indicators/low-birth-weight/releases",
        as_="backbone-manager",
        json={"dimensions": ["birth_year"]},
    )
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    assert body["state"] == "pending_review"
    return body


def test_the_home_page_links_a_data_manager_to_their_pages(client, clock, district):
    assert sign_in(client, clock, district).status_code == 303
    home = client.get("/console")
    for path in ("/console/agreements", "/console/reviews", "/console/budgets"):
        assert f'href="{path}"' in home.text
    assert 'href="/console/audit' not in home.text


def test_the_list_shows_only_the_agreements_the_organization_is_party_to(
    client, clock, district, api
):
    sign_in(client, clock, district)
    r = client.get("/console/agreements")
    assert r.status_code == 200, r.text
    listed = set(re.findall(r'href="/console/agreements/([^"/]+)"', r.text))
    shown_by_api = {a["id"] for a in api.get("/v1/agreements", as_="district-data-manager").json()}
    assert listed == shown_by_api == {DISTRICT}
    assert HEALTH not in r.text


def test_an_agreement_in_plain_language_with_its_odrl_lint_and_approvals(
    client, clock, health, api
):
    sign_in(client, clock, health)
    r = client.get(f"/console/agreements/{HEALTH}")
    assert r.status_code == 200, r.text
    text = html.unescape(r.text)
    for heading in (
        "Who is party",
        "Purpose and legal basis",
        "Term",
        "Datasets and fields",
        "Who may do what",
        "Disclosure rules",
        "Retention and destruction",
        "Review before publication",
        "Lint findings",
        "Versions and approvals",
    ):
        assert heading in text, heading
    assert "No published cell may count fewer than 11 people." in text
    assert (
        "Riverton Children's Collaborative (backbone) may publish aggregates computed from"
        " Live births (births), only where the purpose is one of public benefit"
        " (dpv:PublicBenefit); the recipients are limited to" in text
    )
    assert "No party may export record-level data of the agreement's datasets." in text
    assert "The term runs from 1 July 2025 until 30 June 2028" in text
    assert "Releases may go to Riverton County Department of Public Health (health)" in text
    api_version = api.get(f"/v1/agreements/{HEALTH}/versions/1", as_="health-data-manager").json()
    assert api_version["content_hash"] in text
    # The ODRL download is the API's export.
    link = re.search(r'id="download-odrl" download href="([^"]+)"', r.text)
    assert link, r.text
    odrl = client.get(html.unescape(link.group(1)))
    assert odrl.status_code == 200
    assert odrl.headers["content-disposition"].startswith("attachment;")
    expected = api.get(f"/v1/agreements/{HEALTH}/odrl?version=1", as_="health-data-manager")
    assert odrl.json() == expected.json()
    # Lint findings as the API gives them for the same document.
    linted = api.post(
        "/v1/agreements/lint",
        as_="health-data-manager",
        content=json.dumps(api_version["document"]).encode(),
        headers={"Content-Type": "application/json"},
    ).json()
    for finding in linted["findings"]:
        assert finding["message"] in text
    if not linted["findings"]:
        assert "The linter finds nothing to flag" in text


def test_a_new_draft_is_read_compared_and_approved_by_its_exact_hash(
    client, clock, district, api, session
):
    drafted = _draft(api, DISTRICT, _bigger_cells)
    v = drafted["version"]
    sign_in(client, clock, district)
    page = client.get(f"/console/agreements/{DISTRICT}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert f'id="shown-version">{v}<' in text
    assert "No published cell may count fewer than 20 people." in text
    assert f'name="content_hash" value="{drafted["content_hash"]}"' in page.text
    assert f'id="content-hash">{drafted["content_hash"]}<' in page.text

    diff = client.get(f"/console/agreements/{DISTRICT}/diff", params={"old": v - 1, "new": v})
    assert diff.status_code == 200, diff.text
    dtext = html.unescape(diff.text)
    rows = re.findall(
        r'<tr class="(\w+)">\s*<td class="mark">([^<]*)<.*?"text">([^<]*)<', dtext, re.S
    )
    assert ("removed", "- removed", "  min_cell_size: 10") in rows
    assert ("added", "+ added", "  min_cell_size: 20") in rows
    assert all(kind in ("removed", "added") for kind, _, text in rows if "min_cell" in text)
    assert "A narrower purpose" in dtext

    r = client.post(
        f"/console/agreements/{DISTRICT}/approve",
        data={"csrf": _csrf(page.text), "version": str(v), "content_hash": drafted["content_hash"]},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    event = next(e for e in _last_events(session, 10) if e.action == "agreement.approve")
    assert (event.client_id, event.resource_id) == (
        _person(session, district.username),
        f"{DISTRICT}/v{v}",
    )
    after = client.get(r.headers["location"])
    assert "approval of this version is recorded" in after.text
    shown = api.get(f"/v1/agreements/{DISTRICT}/versions/{v}", as_="district-data-manager").json()
    assert "district" in shown["approved_by"]
    assert f'id="shown-status">{shown["status"]}<' in after.text
    assert re.search(r'id="approved-by">[^<]*district', after.text)
    assert 'id="approve-form"' not in after.text  # approved once
    if shown["status"] != "active":  # the backbone approves too: the version governs
        r = api.post(
            f"/v1/agreements/{DISTRICT}/approve",
            as_="backbone-manager",
            json={"version": v, "content_hash": drafted["content_hash"]},
        )
        assert r.status_code == 200, r.text
    assert 'id="shown-status">active<' in client.get(f"/console/agreements/{DISTRICT}").text


def test_an_approval_of_a_hash_that_is_no_longer_current_is_refused_as_a_page(
    client, clock, district, api, session
):
    first = _draft(api, DISTRICT, _bigger_cells)
    sign_in(client, clock, district)
    page = client.get(f"/console/agreements/{DISTRICT}")
    # The version changes under the reader: the backbone drafts yet another one.
    second = _draft(api, DISTRICT, lambda d: d["disclosure"].update(min_cell_size=25))
    assert second["content_hash"] != first["content_hash"]
    r = client.post(
        f"/console/agreements/{DISTRICT}/approve",
        data={
            "csrf": _csrf(page.text),
            "version": str(second["version"]),
            "content_hash": first["content_hash"],
        },
    )
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "The content hash does not match this version" in html.unescape(r.text)
    event = _last_events(session, 1)[0]
    assert (event.action, event.outcome, event.client_id) == (
        "agreement.approve",
        "rejected",
        _person(session, district.username),
    )
    shown = api.get(
        f"/v1/agreements/{DISTRICT}/versions/{second['version']}", as_="district-data-manager"
    ).json()
    assert "district" not in shown["approved_by"]


def test_a_form_without_the_csrf_token_is_refused(client, clock, district, api, session):
    drafted = _draft(api, DISTRICT, _bigger_cells)
    sign_in(client, clock, district)
    form = {"version": str(drafted["version"]), "content_hash": drafted["content_hash"]}
    for csrf in ("", "not-the-token"):
        r = client.post(f"/console/agreements/{DISTRICT}/approve", data={**form, "csrf": csrf})
        assert r.status_code == 403, r.text
        event = _last_events(session, 1)[0]
        assert (event.action, event.outcome) == ("agreement.approve", "denied")
    for path in (
        f"/console/agreements/{DISTRICT}/suspend",
        f"/console/agreements/{DISTRICT}/terminate",
    ):
        assert client.post(path, data={"csrf": "", "confirm": "terminate"}).status_code == 403
    shown = api.get(
        f"/v1/agreements/{DISTRICT}/versions/{drafted['version']}", as_="district-data-manager"
    ).json()
    assert "district" not in shown["approved_by"]
    assert (
        api.get(f"/v1/agreements/{DISTRICT}", as_="district-data-manager").json()["versions"][0][
            "status"
        ]
        == "active"
    )


def test_another_organizations_agreement_and_release_are_refused_as_the_api_refuses_them(
    client, clock, district, api, session
):
    held = _held_release(api)
    drafted = _draft(api, HEALTH, _bigger_cells)
    sign_in(client, clock, district)
    csrf = _csrf(client.get("/console").text)
    person = _person(session, district.username)
    for path, api_path, action in (
        (f"/console/agreements/{HEALTH}", f"/v1/agreements/{HEALTH}", "agreement.read"),
        (
            f"/console/agreements/{HEALTH}?version=1",
            f"/v1/agreements/{HEALTH}/versions/1",
            "agreement.read",
        ),
        (
            f"/console/agreements/{HEALTH}/diff?old=1&new={drafted['version']}",
            f"/v1/agreements/{HEALTH}/versions/{drafted['version']}",
            "agreement.read",
        ),
        (f"/console/agreements/{HEALTH}/odrl", f"/v1/agreements/{HEALTH}/odrl", None),
        (
            f"/console/reviews/{held['id']}",
            f"/v1/releases/{held['id']}/review",
            "release.review.read",
        ),
    ):
        r = client.get(path)
        if action:
            event = _last_events(session, 1)[0]
            assert (event.action, event.client_id) == (action, person), path
            assert event.outcome == "denied"
        expected = api.get(api_path, as_="district-data-manager")
        assert r.status_code == expected.status_code, (path, r.status_code, expected.text)
        # An agreement not party to: the policy's 403; a release: as one that does not exist.
        assert r.status_code == (404 if "/reviews/" in path else 403), path
        assert r.headers["content-type"].startswith("text/html")
        assert "Birth outcomes" not in r.text and "birth_weight" not in r.text
    # Editing the form: approving the health agreement's draft by its real hash.
    r = client.post(
        f"/console/agreements/{HEALTH}/approve",
        data={
            "csrf": csrf,
            "version": str(drafted["version"]),
            "content_hash": drafted["content_hash"],
        },
    )
    expected = api.post(
        f"/v1/agreements/{HEALTH}/approve",
        as_="district-data-manager",
        json={"version": drafted["version"], "content_hash": drafted["content_hash"]},
    )
    assert r.status_code == expected.status_code == 403, r.text
    for path in (
        f"/console/agreements/{HEALTH}/suspend",
        f"/console/agreements/{HEALTH}/terminate",
    ):
        r = client.post(path, data={"csrf": csrf, "confirm": "terminate"})
        assert r.status_code == 403, (path, r.text)
    for decision in ("approve", "object"):
        r = client.post(
            f"/console/reviews/{held['id']}/{decision}", data={"csrf": csrf, "reason": "no"}
        )
        expected = api.post(
            f"/v1/releases/{held['id']}/review/{decision}",
            as_="district-data-manager",
            json={"reason": "no"},
        )
        assert r.status_code == expected.status_code == 404, (decision, r.text)
    listed = client.get("/console/reviews?state=all")
    assert held["id"] not in listed.text
    shown = api.get(f"/v1/releases/{held['id']}/review", as_="health-data-manager").json()
    assert shown["review"]["state"] == "pending_review"
    assert shown["review"]["reviewers"][0]["decision"] is None


def test_a_held_release_is_read_and_approved_or_objected_to(client, clock, health, api, session):
    held = _held_release(api)
    sign_in(client, clock, health)
    listed = client.get("/console/reviews")
    assert listed.status_code == 200, listed.text
    assert f'href="/console/reviews/{held["id"]}"' in listed.text
    page = client.get(f"/console/reviews/{held['id']}")
    assert page.status_code == 200, page.text
    shown = api.get(f"/v1/releases/{held['id']}/review", as_="health-data-manager").json()
    # The cells the page shows are the review API's.
    cells = re.search(r'<table id="cells">.*?<tbody>(.*?)</tbody>', page.text, re.S).group(1)
    assert cells.count("<tr>") == len(shown["rows"]) > 0
    # What changed since the last published release, as the review API counts it.
    counts = shown["changes"]["counts"]
    moved = counts["changed"] + counts["added"] + counts["removed"]
    if shown["changes"]["against"] is None:
        assert "every cell is new" in page.text
    elif moved:
        assert f"Against release {shown['changes']['against']}" in page.text
        table = re.search(r'<table id="changes">.*?<tbody>(.*?)</tbody>', page.text, re.S)
        assert table and table.group(1).count("<tr>") == moved
    else:
        assert "No cell changed." in page.text
    # An objection needs a reason, as in the API.
    r = client.post(
        f"/console/reviews/{held['id']}/object", data={"csrf": _csrf(page.text), "reason": " "}
    )
    assert r.status_code == 422, r.text
    assert "An objection needs a reason" in r.text
    r = client.post(
        f"/console/reviews/{held['id']}/approve",
        data={"csrf": _csrf(page.text), "reason": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    after = client.get(r.headers["location"])
    assert "Your organization approved the release." in after.text
    assert 'id="release-state">published<' in after.text
    event = next(e for e in _last_events(session, 10) if e.action == "release.review.approve")
    assert event.client_id == _person(session, health.username)
    # Late births arrive; the same release again is held, against the one just published: the
    # page lists the cells that changed. Objected to, with a reason.
    _submit_births(api)
    other = _held_release(api)
    page = client.get(f"/console/reviews/{other['id']}")
    shown = api.get(f"/v1/releases/{other['id']}/review", as_="health-data-manager").json()
    assert shown["changes"]["against"] == held["id"]
    counts = shown["changes"]["counts"]
    moved = counts["changed"] + counts["added"] + counts["removed"]
    assert f"Against release {held['id']}" in page.text
    assert moved > 0  # the late births change some years' shares
    table = re.search(r'<table id="changes">.*?<tbody>(.*?)</tbody>', page.text, re.S)
    assert table and table.group(1).count("<tr>") == moved
    r = client.post(
        f"/console/reviews/{other['id']}/object",
        data={"csrf": _csrf(page.text), "reason": "The Bayview count looks wrong."},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert "objected" in client.get(r.headers["location"]).text
    decided = client.get("/console/reviews?state=decided")
    assert held["id"] in decided.text and other["id"] in decided.text


def test_suspend_resume_and_terminate_with_a_confirmation(client, clock, district, api):
    sign_in(client, clock, district)
    page = client.get(f"/console/agreements/{DISTRICT}")
    csrf = _csrf(page.text)
    assert 'id="suspend-form"' in page.text
    r = client.post(
        f"/console/agreements/{DISTRICT}/suspend",
        data={"csrf": csrf, "reason": "checking"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    after = client.get(r.headers["location"])
    assert 'id="shown-status">suspended<' in after.text and 'id="resume-form"' in after.text
    r = client.post(f"/console/agreements/{DISTRICT}/resume", data={"csrf": csrf})
    assert r.status_code == 200 and 'id="shown-status">active<' in r.text
    confirm = client.get(f"/console/agreements/{DISTRICT}/terminate")
    assert confirm.status_code == 200 and "It cannot be undone" in confirm.text
    r = client.post(f"/console/agreements/{DISTRICT}/terminate", data={"csrf": csrf})
    assert r.status_code == 422 and "Tick the box" in r.text
    live = api.get(f"/v1/agreements/{DISTRICT}", as_="district-data-manager").json()
    assert any(v["status"] == "active" for v in live["versions"])
    r = client.post(
        f"/console/agreements/{DISTRICT}/terminate",
        data={"csrf": csrf, "confirm": "terminate", "reason": "ended"},
    )
    assert r.status_code == 200 and 'id="shown-status">terminated<' in r.text
    ended = api.get(f"/v1/agreements/{DISTRICT}", as_="district-data-manager").json()
    assert all(v["status"] != "active" for v in ended["versions"])


def test_privacy_budgets_are_the_apis(client, clock, health, api):
    sign_in(client, clock, health)
    r = client.get("/console/budgets")
    assert r.status_code == 200, r.text
    budgets = api.get("/v1/budgets", as_="health-data-manager").json()
    rows = re.search(r'<table id="budgets">.*?<tbody>(.*?)</tbody>', r.text, re.S).group(1)
    if budgets:
        assert rows.count("<tr>") == len(budgets)
        for b in budgets:
            assert f"{b['epsilon_remaining']:.3f}" in rows
    else:
        assert "No privacy budget" in rows


def test_every_view_is_audited_naming_the_person(client, clock, health, api, session):
    held = _held_release(api)
    sign_in(client, clock, health)
    person = _person(session, health.username)
    for path, action in (
        ("/console/agreements", "agreement.read"),
        (f"/console/agreements/{HEALTH}", "agreement.read"),
        (f"/console/agreements/{HEALTH}/diff?old=1&new=1", "agreement.read"),
        (f"/console/agreements/{HEALTH}/odrl?version=1", "agreement.read"),
        (f"/console/agreements/{HEALTH}/terminate", "agreement.read"),
        ("/console/reviews", "release.review.list"),
        (f"/console/reviews/{held['id']}", "release.review.read"),
        ("/console/budgets", "agreement.read"),
    ):
        assert client.get(path).status_code == 200, path
        event = _last_events(session, 1)[0]
        assert (event.action, event.client_id, event.organization_id) == (
            action,
            person,
            "health",
        ), path
        assert event.outcome == "succeeded"


def test_no_page_holds_a_password_or_a_totp_secret(client, clock, health, api):
    held = _held_release(api)
    sign_in(client, clock, health)
    for path in (
        "/console/agreements",
        f"/console/agreements/{HEALTH}",
        f"/console/agreements/{HEALTH}/diff",
        "/console/reviews",
        f"/console/reviews/{held['id']}",
        "/console/budgets",
    ):
        text = client.get(path).text
        assert health.password not in text and health.totp_secret not in text, path


def test_a_person_who_is_not_signed_in_is_sent_to_sign_in(client):
    for path in ("/console/agreements", f"/console/agreements/{HEALTH}", "/console/reviews"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next=")


def test_a_wrong_version_is_a_clear_page_and_audited(client, clock, district, session):
    sign_in(client, clock, district)
    person = _person(session, district.username)
    for path, status in (
        (f"/console/agreements/{DISTRICT}?version=abc", 422),
        (f"/console/agreements/{DISTRICT}?version=99", 404),
        (f"/console/agreements/{DISTRICT}/diff?old=1&new=x", 422),
        ("/console/agreements/no-such-agreement", 404),
        ("/console/reviews?state=everything", 422),
    ):
        r = client.get(path)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"].startswith("text/html")
        event = _last_events(session, 1)[0]
        assert (event.client_id, event.outcome) == (person, "rejected"), path
    same = client.get(f"/console/agreements/{DISTRICT}/diff?old=1&new=1")
    assert same.status_code == 200 and "The two documents are the same." in same.text


def test_the_plain_language_names_the_shared_code_lists(client, clock, health):
    sign_in(client, clock, health)
    r = client.get(f"/console/agreements/{HEALTH}")
    assert r.status_code == 200, r.text
    text = html.unescape(r.text)
    assert (
        "neighborhood takes one of the 40 values of the shared code list Riverton neighborhoods"
        " (neighborhoods, version 1)" in text
    )
    assert "race_ethnicity takes one of the 7 values of the shared code list" in text
    assert "following OMB SPD 15 (1997)" in text
