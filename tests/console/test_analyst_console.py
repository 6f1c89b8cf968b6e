"""The backbone analysts' console: indicators and their releases, a definition checked against
the agreements without being saved (and refused with the failed constraint), a release request
previewed (charging nothing) then queued as a job whose page follows it to the release, results
and stories behind the curve; through the API's services, every view audited naming the person,
and nothing for a partner's data manager or a form without the session's CSRF token."""

from __future__ import annotations

import html
import re
import time
from importlib import resources
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from aggregation.models import Indicator, PrivacyBudget, PrivacyCharge, Release
from aggregation.releases import ReleaseRequest
from agreements.service import PolicyCache
from audit.models import AuditEvent
from core.context import RequestContext
from identity import people
from identity.models import Person
from jobs import service as job_service
from jobs.models import Job
from results.models import Story, StoryVersion
from tests.console.conftest import DemoPerson, sign_in


@pytest.fixture
def analyst(demo_people: dict[str, DemoPerson]) -> DemoPerson:
    return demo_people["blake.backbone"]


def _person(session, username: str) -> str:
    return "person:" + session.scalar(select(Person.id).where(Person.username == username))


def _last_events(session, n: int = 5) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.idx.desc()).limit(n)))


def _csrf(text: str) -> str:
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _demo_definition(indicator: str) -> dict[str, Any]:
    text = (resources.files("demo") / "indicators" / "indicators.yaml").read_text()
    found: dict[str, Any] = next(i for i in yaml.safe_load(text) if i["id"] == indicator)
    return found


def _ledger(session) -> tuple[list[tuple[Any, ...]], int, int]:
    session.expire_all()
    budgets = [
        (b.agreement_id, b.dataset, b.period, b.epsilon_spent)
        for b in session.scalars(
            select(PrivacyBudget).order_by(
                PrivacyBudget.agreement_id, PrivacyBudget.dataset, PrivacyBudget.period
            )
        )
    ]
    charges = session.scalar(select(func.count()).select_from(PrivacyCharge))
    releases = session.scalar(select(func.count()).select_from(Release))
    return budgets, charges or 0, releases or 0


def test_the_home_links_to_the_analysts_pages_and_the_indicators_are_the_apis(
    client, clock, analyst, api
):
    assert sign_in(client, clock, analyst).status_code == 303
    home = client.get("/console")
    for path in ("/console/indicators", "/console/define", "/console/results"):
        assert f'href="{path}"' in home.text
    page = client.get("/console/indicators")
    assert page.status_code == 200, page.text
    listed = api.get("/v1/indicators", as_="backbone-manager").json()
    for item in listed:
        assert f'href="/console/indicators/{item["id"]}"' in page.text
    one = client.get("/console/indicators/kindergarten-enrollment")
    assert one.status_code == 200, one.text
    assert 'href="/indicators/kindergarten-enrollment"' in one.text  # public: its public page
    assert "Release preview" not in one.text and 'id="preview"' in one.text
    births = client.get("/console/indicators/low-birth-weight")
    assert 'id="public-page"' not in births.text
    assert client.get("/console/indicators/no-such-thing").status_code == 404


def test_a_check_never_saves_and_a_denied_definition_shows_the_failed_constraint(
    client, clock, analyst, session
):
    sign_in(client, clock, analyst)
    form = client.get("/console/define?template=kindergarten-enrollment")
    assert "kindergarten-enrollment-new" in form.text
    csrf = _csrf(form.text)
    person = _person(session, analyst.username)
    # A permitted definition, checked: the decision with its deciding rules, nothing saved.
    text = html.unescape(re.search(r"<textarea[^>]*>(.*?)</textarea>", form.text, re.S)[1])
    r = client.post("/console/define/check", data={"definition": text, "csrf": csrf})
    assert r.status_code == 200, r.text
    assert "Permitted by the agreements" in r.text and 'id="deciding-rules"' in r.text
    session.expire_all()
    assert session.get(Indicator, "kindergarten-enrollment-new") is None
    event = _last_events(session, 1)[0]
    assert (event.action, event.client_id, event.decision, event.resource_id) == (
        "policy.decide",
        person,
        "permit",
        "kindergarten-enrollment-new",
    )
    # Denied: low birth weight to the public, which the health agreement does not publish to.
    births = {**_demo_definition("low-birth-weight"), "id": "births-for-everyone"}
    births["recipients"] = [*births["recipients"], "public"]
    denied_text = yaml.safe_dump(births, sort_keys=False)
    r = client.post("/console/define/check", data={"definition": denied_text, "csrf": csrf})
    assert r.status_code == 200
    assert "Denied by the agreements" in r.text
    constraints = r.text.split('id="failed-constraints"', 1)[1].split("</table>", 1)[0]
    assert "health-birth-outcomes" in constraints and "<td>recipient</td>" in constraints
    assert _last_events(session, 1)[0].decision == "deny"
    # Defining it is refused the same way, with the same reasons, and saves nothing.
    r = client.post("/console/define", data={"definition": denied_text, "csrf": csrf})
    assert r.status_code == 403, r.text
    assert "health-birth-outcomes" in r.text and 'id="failed-constraints"' in r.text
    assert births["title"] in r.text  # what was typed is kept
    session.expire_all()
    assert session.get(Indicator, "births-for-everyone") is None
    event = _last_events(session, 1)[0]
    assert (event.action, event.outcome, event.client_id) == ("indicator.define", "denied", person)
    # An invalid definition: the fields at fault, nothing echoed, nothing saved.
    r = client.post(
        "/console/define/check", data={"definition": "id: x\nunit: litres\n", "csrf": csrf}
    )
    assert r.status_code == 422 and "unit" in r.text
    # Then defined: saved, and shown.
    r = client.post(
        "/console/define", data={"definition": text, "csrf": csrf}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console/indicators/kindergarten-enrollment-new?defined=1"
    session.expire_all()
    assert session.get(Indicator, "kindergarten-enrollment-new") is not None
    event = _last_events(session, 1)[0]
    assert (event.action, event.client_id) == ("indicator.define", person)


def test_a_preview_charges_nothing(client, clock, analyst, session):
    sign_in(client, clock, analyst)
    before = _ledger(session)
    r = client.get(
        "/console/indicators/kindergarten-readiness/release",
        params={"dimension": ["school_year"], "method": "differential_privacy"},
    )
    assert r.status_code == 200, r.text
    assert 'id="charges"' in r.text and "epsilon 1" in r.text
    assert _ledger(session) == before
    event = _last_events(session, 1)[0]
    assert (event.action, event.client_id) == (
        "release.preview",
        _person(session, "blake.backbone"),
    )


def _follow(client, path: str) -> str:
    for _ in range(300):
        page = client.get(path)
        assert page.status_code == 200, page.text
        if '<meta http-equiv="refresh"' not in page.text:
            return str(page.text)
        time.sleep(0.1)
    raise AssertionError("the job did not finish")


def test_a_request_creates_a_job_whose_page_follows_it_to_the_release(
    client, clock, analyst, session
):
    sign_in(client, clock, analyst)
    preview = client.get(
        "/console/indicators/kindergarten-enrollment/release",
        params={"dimension": ["school_year"]},
    )
    assert preview.status_code == 200, preview.text
    assert "A new release would be computed by suppression" in preview.text
    session.expire_all()
    jobs_before = session.scalar(select(func.count()).select_from(Job))
    r = client.post(
        "/console/indicators/kindergarten-enrollment/releases",
        data={"dimension": ["school_year"], "method": "", "csrf": _csrf(preview.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    path = r.headers["location"]
    assert path.startswith("/console/jobs/job")
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Job)) == jobs_before + 1
    text = _follow(client, path)
    assert 'id="release"' in text, text
    assert re.search(r'id="release-state">published<', text), text
    # Queued and computed for the person, as for a client of the backbone (the job's page is
    # a read of the job, which the API does not log either when it is allowed).
    person = _person(session, "blake.backbone")
    job_id = path.rsplit("/", 1)[1]
    events = {(e.action, e.resource_id): e for e in _last_events(session, 30)}
    assert events[("release.queue", job_id)].client_id == person
    created = [e for (action, _), e in events.items() if action == "release.create"]
    assert created and all(e.client_id == person for e in created)
    # The same request again: the stored release, no new job.
    r = client.post(
        "/console/indicators/kindergarten-enrollment/releases",
        data={"dimension": ["school_year"], "csrf": _csrf(preview.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "stored=" in r.headers["location"]
    again = client.get(r.headers["location"])
    assert 'id="stored"' in again.text and "published" in again.text


def test_results_and_stories_through_the_results_service(client, clock, analyst, session):
    sign_in(client, clock, analyst)
    person = _person(session, analyst.username)
    listed = client.get("/console/results")
    assert listed.status_code == 200
    assert 'href="/console/results/kindergarten-ready"' in listed.text
    assert _last_events(session, 1)[0].action == "result.read"
    page = client.get("/console/results/kindergarten-ready")
    assert page.status_code == 200
    csrf = _csrf(page.text)
    r = client.post(
        "/console/results/kindergarten-ready/stories",
        data={
            "title": "Screening before age 3",
            "body": "Families who had a developmental screening arrive ready more often.",
            "as_of": "2026-02-01",
            "indicator": "kindergarten-readiness",
            "audience": "initiative",
            "csrf": csrf,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    story_id = r.headers["location"].rsplit("#", 1)[1]
    event = _last_events(session, 1)[0]
    assert (event.action, event.client_id, event.resource_id) == (
        "story.write",
        person,
        f"{story_id}/v1",
    )
    page = client.get("/console/results/kindergarten-ready")
    assert "Screening before age 3" in page.text
    r = client.post(
        f"/console/stories/{story_id}/versions",
        data={
            "title": "Screening before age 3, revised",
            "body": "A second look.",
            "as_of": "2026-03-01",
            "csrf": csrf,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    session.expire_all()
    story = session.get(Story, story_id)
    assert story is not None and story.latest_version == 2
    assert (
        session.scalar(
            select(func.count()).select_from(StoryVersion).where(StoryVersion.story_id == story_id)
        )
        == 2
    )
    # Another organization's story is not revised (the service refuses it, audited).
    other = session.scalar(select(Story.id).where(Story.author_organization != "backbone"))
    r = client.post(
        f"/console/stories/{other}/versions",
        data={"title": "Mine now", "body": "x", "as_of": "2026-03-01", "csrf": csrf},
    )
    assert r.status_code == 403
    event = _last_events(session, 1)[0]
    assert (event.action, event.outcome, event.client_id) == ("story.write", "denied", person)


def test_a_partner_data_manager_reaches_none_of_it(client, clock, district, session):
    sign_in(client, clock, district)
    person = _person(session, district.username)
    home = client.get("/console")
    csrf = _csrf(home.text)
    for path in (
        "/console/indicators",
        "/console/indicators/kindergarten-enrollment",
        "/console/define",
        "/console/indicators/kindergarten-enrollment/release?dimension=school_year",
        "/console/results",
    ):
        r = client.get(path)
        assert r.status_code == 403, (path, r.status_code)
        assert r.headers["content-type"].startswith("text/html")
    event = _last_events(session, 1)[0]
    assert (event.action, event.outcome, event.client_id) == ("result.read", "denied", person)
    session.expire_all()
    jobs_before = session.scalar(select(func.count()).select_from(Job))
    r = client.post(
        "/console/indicators/kindergarten-enrollment/releases",
        data={"dimension": ["school_year"], "csrf": csrf},
    )
    assert r.status_code == 403
    event = _last_events(session, 1)[0]
    assert (event.action, event.outcome, event.client_id) == ("release.create", "denied", person)
    r = client.post("/console/define", data={"definition": "id: x", "csrf": csrf})
    assert r.status_code == 403
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Job)) == jobs_before


def test_forms_without_the_sessions_csrf_token_are_refused(client, clock, analyst, session):
    sign_in(client, clock, analyst)
    session.expire_all()
    jobs_before = session.scalar(select(func.count()).select_from(Job))
    text = yaml.safe_dump({**_demo_definition("kindergarten-enrollment"), "id": "no-csrf"})
    for path, data in (
        ("/console/define", {"definition": text}),
        ("/console/define/check", {"definition": text}),
        ("/console/indicators/kindergarten-enrollment/releases", {"dimension": "school_year"}),
        (
            "/console/results/kindergarten-ready/stories",
            {"title": "t", "body": "b", "as_of": "2026-01-01"},
        ),
    ):
        for token in (None, "forged"):
            form = {**data, **({"csrf": token} if token else {})}
            r = client.post(path, data=form)
            assert r.status_code == 403, (path, r.status_code, r.text)
    session.expire_all()
    assert session.get(Indicator, "no-csrf") is None
    assert session.scalar(select(func.count()).select_from(Job)) == jobs_before


def test_not_signed_in_is_sent_to_sign_in(client):
    r = client.get("/console/indicators", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/sign-in?next=/console/indicators"


def test_an_active_jobs_page_refreshes_itself_and_a_partner_cannot_read_it(
    client, clock, analyst, session, demo_people
):

    person = session.scalar(select(Person).where(Person.username == analyst.username))
    ctx = RequestContext("req-test", clock(), people.principal_of(person))
    policy = PolicyCache(lambda: session).get(session)
    job, created = job_service.request_release(
        session, ctx, policy, "kindergarten-enrollment", ReleaseRequest(("neighborhood",), None)
    )
    assert created
    session.commit()
    sign_in(client, clock, analyst)
    r = client.get(f"/console/jobs/{job.id}")
    assert r.status_code == 200, r.text
    assert '<meta http-equiv="refresh" content="2">' in r.text
    assert 'id="state">queued<' in r.text and "<progress" in r.text
    client.post("/sign-out", data={"csrf": _csrf(r.text)})
    # A partner's data manager may not read release jobs (no indicators:write).
    sign_in(client, clock, demo_people["dana.district"])
    assert client.get(f"/console/jobs/{job.id}").status_code == 403


def test_a_job_runs_for_the_person_who_requested_it_until_they_are_disabled(session, analyst):
    person = session.scalar(select(Person).where(Person.username == analyst.username))
    requester = f"person:{person.id}"
    assert job_service._requester_active(session, requester)
    person.disabled_at = person.created_at
    session.flush()
    assert not job_service._requester_active(session, requester)
    assert not job_service._requester_active(session, "person:nobody")
    session.rollback()
