"""Partner staff's console: the datasets their organization sends, each one's fields and
template, the upload form through the API's own ingest path, the receipt or the validation
report (never a value), their organization's submissions and withdrawal; every view audited
naming the person, and another organization's dataset or submission refused as the API refuses
it, whatever the URL or the form says."""

from __future__ import annotations

import gzip
import html
from typing import Any

import pytest
from sqlalchemy import func, select

from audit.models import AuditEvent
from identity.models import Person
from records.models import Submission
from tests.console.conftest import DemoPerson, sign_in

DATASET = "kindergarten_readiness"
CSV = (
    b"student_id,school_year,neighborhood,race_ethnicity,ready\n"
    b"QQ00000001,2025-26,Ashland,Asian,true\n"
    b"QQ00000002,2025-26,Bayview,White,false\n"
)
# Two bad rows; the values must never appear in the report page.
BAD = (
    b"student_id,school_year,neighborhood,race_ethnicity,ready\n"
    b"QQ00000003,2025-26,Atlantis-Secret-Town,Asian,true\n"
    b"QQ00000004,1999-00,Ashland,Asian,maybe-secret\n"
)


@pytest.fixture
def staff(demo_people: dict[str, DemoPerson]) -> DemoPerson:
    return demo_people["sam.sis"]


def _person(session: Any, username: str) -> str:
    return "person:" + session.scalar(select(Person.id).where(Person.username == username))


def _last_events(session: Any, n: int = 5) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.idx.desc()).limit(n)))


def _csrf(text: str) -> str:
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _key(text: str) -> str:
    return text.split('name="idempotency_key" value="', 1)[1].split('"', 1)[0]


def _submissions(session: Any) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(Submission)) or 0)


def _upload(
    client: Any,
    body: bytes,
    *,
    dataset: str = DATASET,
    filename: str = "records.csv",
    csrf: str | None = None,
    **fields: str,
) -> Any:
    form = client.get(f"/console/datasets/{DATASET}")
    data = {
        "csrf": _csrf(form.text) if csrf is None else csrf,
        "idempotency_key": _key(form.text),
        **fields,
    }
    return client.post(
        f"/console/datasets/{dataset}/upload",
        data=data,
        files={"file": (filename, body, "application/octet-stream")},
        follow_redirects=False,
    )


def test_the_demo_has_a_staff_person_per_partner_holding_the_partner_systems_scopes(
    demo_people: dict[str, DemoPerson],
) -> None:
    from identity.scopes import ROLES

    staff_people = {p.organization for p in demo_people.values() if p.role == "partner-staff"}
    assert staff_people == {"district", "health", "early-learning"}
    assert ROLES["partner-staff"] == ROLES["partner-system"]


def test_the_home_links_to_the_staff_pages_and_only_for_them(client, clock, staff, district):
    sign_in(client, clock, staff)
    home = client.get("/console")
    assert 'href="/console/datasets"' in home.text
    assert 'href="/console/submissions"' in home.text
    assert 'href="/console/agreements"' not in home.text
    client.post("/sign-out", data={"csrf": _csrf(home.text)})
    sign_in(client, clock, district)  # a data manager: no records:write
    home = client.get("/console")
    assert 'href="/console/datasets"' not in home.text
    assert client.get("/console/datasets").status_code == 403


def test_the_datasets_and_a_datasets_fields_and_template_as_the_api_gives_them(
    client, clock, staff, session, api
):
    api_names = [d["name"] for d in api.get("/v1/datasets", as_="district-sis").json()]
    described = api.get(f"/v1/datasets/{DATASET}", as_="district-sis").json()
    sign_in(client, clock, staff)
    r = client.get("/console/datasets")
    assert r.status_code == 200, r.text
    for name in api_names:
        assert f'href="/console/datasets/{name}"' in r.text
    assert "/console/datasets/births" not in r.text
    assert _last_events(session, 1)[0].action == "dataset.list"
    assert _last_events(session, 1)[0].client_id == _person(session, "sam.sis")

    r = client.get(f"/console/datasets/{DATASET}")
    assert r.status_code == 200, r.text
    for field in described["schema"]["fields"]:
        assert f"<code>{field['name']}</code>" in r.text
    assert "2025-26" in r.text  # a period open
    # student_id becomes a linkage token; the row says so
    row = r.text.split("<code>student_id</code>", 1)[1].split("</tr>", 1)[0]
    assert row.rstrip().endswith("<td>Yes</td>")
    assert 'enctype="multipart/form-data"' in r.text
    event = _last_events(session, 1)[0]
    assert (event.action, event.resource_id) == ("dataset.read", DATASET)
    assert event.client_id == _person(session, "sam.sis")

    t = client.get(f"/console/datasets/{DATASET}/template")
    assert t.status_code == 200
    assert t.headers["content-type"].startswith("text/csv")
    assert t.content == api.get(f"/v1/datasets/{DATASET}/template", as_="district-sis").content
    assert "attachment" in t.headers["content-disposition"]


def test_another_partners_dataset_is_refused_as_the_api_refuses_it(client, clock, staff, session):
    sign_in(client, clock, staff)
    for path in ("/console/datasets/births", "/console/datasets/births/template"):
        r = client.get(path)
        assert r.status_code == 404, path
    before = _submissions(session)
    r = _upload(client, CSV, dataset="births", period="2020")
    assert r.status_code in (403, 404), r.text
    assert _submissions(session) == before
    event = _last_events(session, 1)[0]
    assert event.action == "submission.create" and event.outcome != "succeeded"
    assert event.client_id == _person(session, "sam.sis")


def test_an_upload_goes_through_the_apis_ingest_and_shows_the_receipt(
    client, clock, staff, session, api
):
    sign_in(client, clock, staff)
    before = _submissions(session)
    r = _upload(client, CSV, period="2025-26")
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith("/console/submissions/sub_") and "done=created" in location
    assert _submissions(session) == before + 1
    submission_id = location.split("/console/submissions/", 1)[1].split("?", 1)[0]
    created = [e for e in _last_events(session, 5) if e.action == "submission.create"]
    assert created and created[0].client_id == _person(session, "sam.sis")
    assert created[0].outcome == "succeeded"

    page = client.get(location)
    assert page.status_code == 200
    receipt = api.get(f"/v1/submissions/{submission_id}", as_="district-sis").json()
    assert receipt["row_count"] == 2
    for value in (submission_id, receipt["body_sha256"], str(receipt["audit_index"]), "comma"):
        assert value in page.text
    assert "QQ00000001" not in page.text
    proof_link = f"/console/proofs/inclusion?index={receipt['audit_index']}"
    assert proof_link in page.text
    proof = client.get(proof_link)
    assert proof.status_code == 200
    assert "attachment" in proof.headers["content-disposition"]
    from_api = api.get(
        "/v1/audit/proofs/inclusion",
        as_="district-sis",
        params={"index": receipt["audit_index"], "tree_size": proof.json()["tree_size"]},
    )
    assert proof.json() == from_api.json()


def test_a_gzip_spreadsheet_name_and_a_form_sent_twice_follow_the_api(
    client, clock, staff, session
):
    sign_in(client, clock, staff)
    form = client.get(f"/console/datasets/{DATASET}")
    data = {"csrf": _csrf(form.text), "idempotency_key": _key(form.text), "period": "2025-26"}
    files = {"file": ("records.csv.gz", gzip.compress(CSV), "application/gzip")}
    first = client.post(
        f"/console/datasets/{DATASET}/upload", data=data, files=files, follow_redirects=False
    )
    assert first.status_code == 303, first.text
    count = _submissions(session)
    again = client.post(
        f"/console/datasets/{DATASET}/upload", data=data, files=files, follow_redirects=False
    )
    assert again.status_code == 303
    assert "done=replayed" in again.headers["location"]
    assert again.headers["location"].split("?")[0] == first.headers["location"].split("?")[0]
    assert _submissions(session) == count


def test_a_refused_file_changes_nothing_and_the_report_has_no_values(
    client, clock, staff, session, api
):
    sign_in(client, clock, staff)
    before = _submissions(session)
    r = _upload(client, BAD, period="2025-26")
    assert r.status_code == 422, r.text
    assert _submissions(session) == before
    text = html.unescape(r.text)
    for value in ("Atlantis-Secret-Town", "1999-00", "maybe-secret", "QQ00000003", "QQ00000004"):
        assert value not in text
    problem = api.post(
        f"/v1/datasets/{DATASET}/submissions?period=2025-26",
        as_="district-sis",
        content=BAD,
        headers={"Content-Type": "text/csv"},
    ).json()
    assert problem["report"]["errors"]
    for error in problem["report"]["errors"]:
        row = f'<th scope="row">{error["row"]}</th>'
        assert row in r.text
        assert f"<code>{error['field']}</code>" in r.text
        assert f"<code>{error['code']}</code>" in r.text
    event = next(e for e in _last_events(session, 6) if e.client_id == _person(session, "sam.sis"))
    assert event.action == "submission.create" and event.outcome != "succeeded"


def test_an_unsupported_file_is_refused_as_the_api_refuses_it(client, clock, staff, session):
    sign_in(client, clock, staff)
    before = _submissions(session)
    r = _upload(client, b"\x00\x01", filename="records.bin")
    assert r.status_code == 415, r.text
    assert _submissions(session) == before


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(
    client, clock, staff, session, api
):
    sign_in(client, clock, staff)
    before = _submissions(session)
    r = _upload(client, CSV, csrf="not-the-token", period="2025-26")
    assert r.status_code == 403
    assert _submissions(session) == before
    submission_id = _upload(client, CSV, period="2025-26").headers["location"].split("/")[-1]
    submission_id = submission_id.split("?")[0]
    r = client.post(f"/console/submissions/{submission_id}/withdraw", data={"csrf": "nope"})
    assert r.status_code == 403
    receipt = api.get(f"/v1/submissions/{submission_id}", as_="district-sis").json()
    assert receipt["withdrawal"] is None


def test_submissions_list_page_and_withdrawal_under_the_agreements_terms(
    client, clock, staff, session, api
):
    sign_in(client, clock, staff)
    location = _upload(client, CSV, period="2025-26").headers["location"]
    submission_id = location.split("/console/submissions/", 1)[1].split("?", 1)[0]
    listed = client.get("/console/submissions")
    assert listed.status_code == 200
    assert f'href="/console/submissions/{submission_id}"' in listed.text
    assert _last_events(session, 1)[0].action == "submission.list"
    assert _last_events(session, 1)[0].client_id == _person(session, "sam.sis")

    page = client.get(f"/console/submissions/{submission_id}")
    event = _last_events(session, 1)[0]
    assert (event.action, event.resource_id) == ("submission.read", submission_id)
    assert event.client_id == _person(session, "sam.sis")
    confirm_link = f"/console/submissions/{submission_id}/withdraw"
    assert confirm_link in page.text
    confirm = client.get(confirm_link)
    assert confirm.status_code == 200
    assert "notice_days: 30" in confirm.text  # the district agreement's terms
    r = client.post(confirm_link, data={"csrf": _csrf(confirm.text)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    receipt = api.get(f"/v1/submissions/{submission_id}", as_="district-sis").json()
    assert receipt["withdrawal"]["state"] == "scheduled"
    withdrawn = next(e for e in _last_events(session, 5) if e.action == "submission.withdraw")
    assert withdrawn.client_id == _person(session, "sam.sis")
    assert withdrawn.outcome == "succeeded"
    shown = client.get(r.headers["location"])
    assert "The withdrawal was recorded." in shown.text
    assert f'href="{confirm_link}"' not in shown.text
    # A scheduled withdrawal is offered for cancellation instead.
    assert f'href="{confirm_link}al/cancel"' in shown.text
    # withdrawing again: the API's conflict
    r = client.post(confirm_link, data={"csrf": _csrf(confirm.text)}, follow_redirects=False)
    assert r.status_code == 409


def test_a_health_submission_cannot_be_seen_or_withdrawn_from_the_district(
    client, clock, staff, session, api
):
    from tests.indicators.test_review import _submit_births

    _submit_births(api)
    health = api.get("/v1/submissions", as_="health-vitals").json()["items"][0]["id"]
    sign_in(client, clock, staff)
    assert f"/console/submissions/{health}" not in client.get("/console/submissions").text
    for path in (f"/console/submissions/{health}", f"/console/submissions/{health}/withdraw"):
        r = client.get(path)
        assert r.status_code == 403, path
        event = _last_events(session, 1)[0]
        assert event.client_id == _person(session, "sam.sis") and event.outcome != "succeeded"
    page = client.get("/console/submissions")
    r = client.post(
        f"/console/submissions/{health}/withdraw",
        data={"csrf": _csrf(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 403
    event = _last_events(session, 1)[0]
    assert event.action == "submission.withdraw" and event.outcome != "succeeded"
    assert event.client_id == _person(session, "sam.sis") and event.resource_id == health
    receipt = api.get(f"/v1/submissions/{health}", as_="health-vitals").json()
    assert (receipt["status"], receipt["withdrawal"]) == ("accepted", None)
