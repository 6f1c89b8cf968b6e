"""Partner staff's console, continued: the sheet of a spreadsheet to read (the API's
``?sheet=``), and cancelling a scheduled withdrawal (``DELETE .../withdrawal``) after a page
that explains the agreement's withdrawal terms; both refused without the CSRF token, and
another organization's submission refused as the API refuses it."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tests.console.conftest import DemoPerson, sign_in
from tests.console.test_staff_console import (
    CSV,
    DATASET,
    _csrf,
    _last_events,
    _person,
    _submissions,
    _upload,
)


@pytest.fixture
def staff(demo_people: dict[str, DemoPerson]) -> DemoPerson:
    return demo_people["sam.sis"]


ROWS = [
    ["student_id", "school_year", "neighborhood", "race_ethnicity", "ready"],
    ["QQ00000011", "2025-26", "Ashland", "Asian", True],
    ["QQ00000012", "2025-26", "Bayview", "White", False],
]


def _workbook() -> bytes:
    """A cover sheet first (not records), the records on the sheet named "Records"."""
    import openpyxl

    workbook = openpyxl.Workbook()
    cover = workbook.active
    cover.title = "Cover"
    cover.append(["about"])
    cover.append(["Kindergarten readiness, fall count"])
    records = workbook.create_sheet("Records")
    for row in ROWS:
        records.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def test_the_upload_form_offers_the_sheet_and_reads_the_one_named(
    client, clock, staff, session, api
):
    sign_in(client, clock, staff)
    form = client.get(f"/console/datasets/{DATASET}")
    assert 'name="sheet"' in form.text and '<label for="sheet">' in form.text
    before = _submissions(session)
    # The first sheet by default, as the API: the cover sheet is not the dataset's records.
    first = _upload(client, _workbook(), filename="readiness.xlsx")
    assert first.status_code == 403, first.text  # its column is no field of the dataset
    assert _submissions(session) == before
    missing = _upload(client, _workbook(), filename="readiness.xlsx", sheet="Nope")
    assert missing.status_code in (400, 422), missing.text
    assert _submissions(session) == before
    named = _upload(client, _workbook(), filename="readiness.xlsx", sheet="Records")
    assert named.status_code == 303, named.text
    submission_id = named.headers["location"].split("/console/submissions/", 1)[1].split("?")[0]
    receipt = api.get(f"/v1/submissions/{submission_id}", as_="district-sis").json()
    assert receipt["row_count"] == 2
    # A sheet named for a CSV file is refused, as the API refuses ?sheet= for one.
    csv = _upload(client, CSV, sheet="Records")
    assert csv.status_code == 422 and "sheet" in csv.text


def _scheduled(client: Any, api: Any) -> str:
    location = _upload(client, CSV, period="2025-26").headers["location"]
    submission_id: str = location.split("/console/submissions/", 1)[1].split("?", 1)[0]
    r = api.delete(f"/v1/submissions/{submission_id}", as_="district-sis")
    assert r.status_code == 200 and r.json()["withdrawal"]["state"] == "scheduled", r.text
    return submission_id


def test_a_scheduled_withdrawal_is_cancelled_after_its_terms_are_explained(
    client, clock, staff, session, api
):
    sign_in(client, clock, staff)
    submission_id = _scheduled(client, api)
    page = client.get(f"/console/submissions/{submission_id}")
    link = f"/console/submissions/{submission_id}/withdrawal/cancel"
    assert f'href="{link}"' in page.text
    assert f'/console/submissions/{submission_id}/withdraw"' not in page.text
    confirm = client.get(link)
    assert confirm.status_code == 200, confirm.text
    assert "withdrawal.notice_days: 30" in confirm.text  # the district agreement's terms
    assert "Cancelling keeps the submission in use" in confirm.text
    assert client.post(link, data={"csrf": "forged"}).status_code == 403
    refused = _last_events(session, 1)[0]
    assert (refused.action, refused.outcome) == ("submission.withdrawal_cancel", "denied")
    receipt = api.get(f"/v1/submissions/{submission_id}", as_="district-sis").json()
    assert receipt["withdrawal"]["state"] == "scheduled"
    r = client.post(link, data={"csrf": _csrf(confirm.text)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert "The scheduled withdrawal is cancelled" in client.get(r.headers["location"]).text
    receipt = api.get(f"/v1/submissions/{submission_id}", as_="district-sis").json()
    assert receipt["status"] == "accepted" and receipt["withdrawal"] is None
    event = next(e for e in _last_events(session, 5) if e.action == "submission.withdrawal_cancel")
    assert event.client_id == _person(session, "sam.sis") and event.outcome == "succeeded"
    # Nothing is scheduled any more: the page says so, and the form is the API's conflict.
    assert client.get(link).status_code == 409
    assert client.post(link, data={"csrf": _csrf(confirm.text)}).status_code == 409


def test_another_organizations_scheduled_withdrawal_cannot_be_cancelled(
    client, clock, staff, demo_people, session, api
):
    sign_in(client, clock, staff)
    submission_id = _scheduled(client, api)
    # Another partner's staff, editing the URL.
    sign_in(client, clock, demo_people["harper.vitals"])
    link = f"/console/submissions/{submission_id}/withdrawal/cancel"
    assert client.get(link).status_code == 403
    csrf = _csrf(client.get("/console/submissions").text)
    assert client.post(link, data={"csrf": csrf}).status_code == 403
    event = _last_events(session, 1)[0]
    assert event.action == "submission.withdrawal_cancel" and event.outcome != "succeeded"
    receipt = api.get(f"/v1/submissions/{submission_id}", as_="district-sis").json()
    assert receipt["withdrawal"]["state"] == "scheduled"
