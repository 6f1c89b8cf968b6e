"""The console's submission page shows the receipt's data-quality report (counts, warnings
linking the earlier submissions), never a value of a person."""

from __future__ import annotations

import os

from tests.console.conftest import DemoPerson, sign_in
from tests.records.helpers import agreement_document, make_agreement
from tests.records.test_quality import DATASET, FIELDS, RACE, URL, body


def test_the_console_submission_page_shows_the_report(client, clock, api, session, demo_people):
    staff: DemoPerson = demo_people["sam.sis"]
    uid = "quality-page-" + os.urandom(3).hex()
    doc = agreement_document(
        uid, FIELDS, dataset=DATASET, key=["student_id", "school_year"], period_field="school_year"
    )
    make_agreement(session, doc, clock())
    first = api.post(
        URL,
        as_="district-sis",
        content=body({"Ashland": 4, "Bayview": 2}),
        params={"period": "2025-26"},
        headers={"Content-Type": "text/csv"},
    ).json()
    second = api.post(
        URL,
        as_="district-sis",
        content=body({"Ashland": 2}, start=2),
        params={"period": "2025-26"},
        headers={"Content-Type": "text/csv"},
    ).json()
    sign_in(client, clock, staff)
    page = client.get(f"/console/submissions/{second['id']}")
    assert page.status_code == 200
    text = page.text
    assert 'id="quality"' in text
    for code in ("period-overlap", "duplicate-keys"):
        assert code in text
    assert f"/console/submissions/{first['id']}" in text
    assert "Values present per field" in text and "Rows per neighborhood" in text
    assert "QZ0000" not in text and RACE not in text
    older = client.get(f"/console/submissions/{first['id']}").text
    assert "No warnings." in older
