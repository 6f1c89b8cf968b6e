"""The data-quality report of a submission: counts per field, period and geography, and the
warnings that compare it with the partner's earlier submissions. Warnings never block; the report
holds counts, never values of people; the receipt, its replay, the webhook and the console page
show the same report."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import select

from agreements.document import AgreementDocument
from agreements.lint import lint
from notifications.models import NotificationEvent
from records import quality, service
from tests.records.conftest import context
from tests.records.helpers import agreement_document, make_agreement

DATASET = "quality_kr"
URL = f"/v1/datasets/{DATASET}/submissions"
HEADER = "student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"
# Values a report must never hold: an identifier and a category of a field that is neither the
# period nor a geography.
RACE = "Native Hawaiian or Other Pacific Islander"


YEARS = ["2023-24", "2024-25", "2025-26"]
FIELDS: list[dict[str, Any]] = [
    {
        "name": "student_id",
        "type": "string",
        "role": "identifier",
        "constraints": {"required": True, "pattern": "[A-Z]{2}[0-9]{8}"},
    },
    {
        "name": "school_year",
        "type": "string",
        "role": "dimension",
        "constraints": {"required": True, "enum": YEARS},
    },
    {
        "name": "neighborhood",
        "type": "string",
        "role": "dimension",
        "geography": "neighborhood",
        "constraints": {"required": True, "enum": ["Ashland", "Bayview", "Central"]},
    },
    {
        "name": "race_ethnicity",
        "type": "string",
        "role": "dimension",
        "constraints": {"required": True, "enum": ["Asian", RACE]},
    },
    {"name": "ready", "type": "boolean", "role": "dimension"},
    {
        "name": "assessment_score",
        "type": "integer",
        "role": "measure",
        "constraints": {"minimum": 0, "maximum": 100},
    },
]


@pytest.fixture(autouse=True)
def quality_agreement(session, clock):
    """A fresh agreement for the district's own 'quality_kr' dataset: no earlier submissions."""
    uid = "quality-" + os.urandom(3).hex()
    doc = agreement_document(
        uid, FIELDS, dataset=DATASET, key=["student_id", "school_year"], period_field="school_year"
    )
    make_agreement(session, doc, clock())
    return uid


@pytest.fixture
def submit(submit_file):
    """Submit to the 'quality_kr' dataset through the service."""
    return partial(submit_file, dataset=DATASET)


def body(
    counts: dict[str, int], *, prefix: str = "QZ", start: int = 0, year: str = "2025-26"
) -> bytes:
    """Records of students ``prefix``+number from ``start``, ``counts`` of them per neighborhood;
    every third one without an assessment score."""
    lines = []
    i = start
    for hood, n in counts.items():
        for _ in range(n):
            score = "" if i % 3 == 0 else str(i % 101)
            lines.append(f"{prefix}{i:08d},{year},{hood},{RACE},true,{score}\n")
            i += 1
    return (HEADER + "".join(lines)).encode()


def codes(receipt: service.Receipt) -> list[str]:
    assert receipt.quality is not None
    return [w["code"] for w in receipt.quality["warnings"]]


def warning(receipt: service.Receipt, code: str) -> dict[str, Any]:
    assert receipt.quality is not None
    found = [w for w in receipt.quality["warnings"] if w["code"] == code]
    assert len(found) == 1, receipt.quality["warnings"]
    return found[0]


def accepted_events(session: Any, submission_id: str) -> list[dict[str, Any]]:
    events = session.scalars(
        select(NotificationEvent)
        .where(NotificationEvent.type == "submission.accepted")
        .order_by(NotificationEvent.seq)
    ).all()
    return [dict(e.data) for e in events if e.data["submission"] == submission_id]


def accepted_event(session: Any, submission_id: str) -> dict[str, Any]:
    """The event told to the submitting organization (the first: the full report)."""
    return accepted_events(session, submission_id)[0]


def test_the_report_counts_fields_periods_and_geographies(submit, session):
    receipt = submit(body({"Ashland": 6, "Bayview": 3}))
    q = receipt.quality
    assert q is not None
    assert q["rows"] == 9
    # Students 0, 3 and 6 have no score.
    assert q["fields"]["assessment_score"] == {"present": 6, "missing": 3, "completeness": 0.6667}
    assert q["fields"]["student_id"] == {"present": 9, "missing": 0, "completeness": 1.0}
    assert set(q["fields"]) == {
        "student_id",
        "school_year",
        "neighborhood",
        "race_ethnicity",
        "ready",
        "assessment_score",
    }
    assert q["periods"] == {"field": "school_year", "rows": {"2025-26": 9}}
    assert q["geographies"] == {
        "neighborhood": {"field": "neighborhood", "rows": {"Ashland": 6, "Bayview": 3}}
    }
    assert q["warnings"] == []
    # Stored with the submission: the receipt read later and the webhook say the same.
    assert accepted_event(session, receipt.submission_id)["quality"] == q


def test_a_drop_of_40_percent_warns_and_39_does_not(submit):
    first = submit(body({"Ashland": 100}), period="2025-26")
    kept = submit(
        body({"Ashland": 61}), period="2025-26", replaces=first.submission_id
    )  # a drop of 39%
    assert "rows-dropped" not in codes(kept)
    assert "geography-rows-dropped" not in codes(kept)

    other = submit(body({"Ashland": 100}, year="2024-25"), period="2024-25")
    dropped = submit(
        body({"Ashland": 60}, year="2024-25"), period="2024-25", replaces=other.submission_id
    )
    assert dropped.status == "accepted"  # a warning never blocks
    w = warning(dropped, "rows-dropped")
    assert w == {
        "code": "rows-dropped",
        "message": quality.MESSAGES["rows-dropped"],
        "submission": other.submission_id,
        "previous_rows": 100,
        "rows": 60,
        "drop": 0.4,
    }
    g = warning(dropped, "geography-rows-dropped")
    assert (g["field"], g["geography"], g["previous_rows"], g["rows"]) == (
        "neighborhood",
        "Ashland",
        100,
        60,
    )


def test_a_geography_that_drops_warns_even_when_the_total_does_not(submit):
    first = submit(body({"Ashland": 50, "Bayview": 50}), period="2025-26")
    second = submit(
        body({"Ashland": 50, "Bayview": 20, "Central": 0}),
        period="2025-26",
        replaces=first.submission_id,
    )
    assert "rows-dropped" not in codes(second)  # 100 -> 70
    g = warning(second, "geography-rows-dropped")
    assert (g["geography"], g["previous_rows"], g["rows"], g["drop"]) == ("Bayview", 50, 20, 0.6)
    # A geography gone entirely counts as a drop to 0.
    third = submit(body({"Ashland": 70}), period="2025-26", replaces=second.submission_id)
    g = warning(third, "geography-rows-dropped")
    assert (g["geography"], g["rows"], g["drop"]) == ("Bayview", 0, 1.0)


def test_overlap_warns_only_without_replaces(submit):
    first = submit(body({"Ashland": 5}), period="2025-26")
    assert codes(first) == []
    assert first.quality is not None
    assert first.quality["periods"] == {"field": "school_year", "rows": {"2025-26": 5}}
    second = submit(body({"Ashland": 5}, start=100), period="2025-26")
    assert second.status == "accepted"
    w = warning(second, "period-overlap")
    assert w["submissions"] == [first.submission_id]
    assert "duplicate-keys" not in codes(second)  # other students
    third = submit(body({"Ashland": 5}, start=200), period="2025-26", replaces=second.submission_id)
    assert "period-overlap" not in codes(third)
    # Another period is no overlap; nor is a submission that declares none.
    assert codes(submit(body({"Ashland": 5}, year="2024-25"), period="2024-25")) == []
    assert codes(submit(body({"Ashland": 5}, start=300))) == []


def test_duplicate_keys_across_submissions_of_the_period_are_counted(submit, session, clock):
    first = submit(body({"Ashland": 10}), period="2025-26")
    second = submit(body({"Ashland": 10}, start=5), period="2025-26")  # 5 to 14
    w = warning(second, "duplicate-keys")
    assert (w["count"], w["submissions"]) == (5, [first.submission_id])
    # The replaced submission is not compared: replacing the second with the same students
    # leaves the first's five in common.
    third = submit(body({"Ashland": 10}, start=5), period="2025-26", replaces=second.submission_id)
    assert warning(third, "duplicate-keys")["count"] == 5
    # Replacing the first with other students: none in common with the third.
    fourth = submit(body({"Ashland": 10}, start=50), period="2025-26", replaces=first.submission_id)
    assert "duplicate-keys" not in codes(fourth)
    # A withdrawn submission is not compared either.
    service.withdraw(session, context(session, "district-sis", clock()), third.submission_id)
    fifth = submit(body({"Ashland": 3}, start=5), period="2025-26")
    assert "duplicate-keys" not in codes(fifth)
    assert warning(fifth, "period-overlap")["submissions"] == [fourth.submission_id]


def test_no_value_of_a_person_is_in_the_report_or_the_webhook(submit, session):
    first = submit(body({"Ashland": 4}, prefix="XK"), period="2025-26")
    second = submit(body({"Bayview": 4}, prefix="XK"), period="2025-26")
    assert set(codes(second)) == {"period-overlap", "duplicate-keys", "geography-rows-dropped"}
    for receipt in (first, second):
        for text in (
            json.dumps(receipt.quality),
            json.dumps(accepted_event(session, receipt.submission_id)),
        ):
            assert "XK0000" not in text
            assert RACE not in text
    for w in second.quality["warnings"] if second.quality else []:
        assert w["message"] == quality.MESSAGES[w["code"]]


@pytest.fixture
def scheduled(session, clock):
    """An agreement whose 'survey' dataset's 2024-25 submission is due three days ago and its
    2025-26 one today."""
    today = clock().date()
    uid = "schedule-" + os.urandom(3).hex()
    doc = agreement_document(uid, period_field="school_year")
    doc["datasets"][0]["submission_schedule"] = {
        "due": {
            "2024-25": (today - timedelta(days=3)).isoformat(),
            "2025-26": today.isoformat(),
        }
    }
    make_agreement(session, doc, clock())
    return uid


def survey(year: str) -> bytes:
    return ("person_id,school_year,score\n" + "".join(
        f"SC{i:06d},{year},{i}.5\n" for i in range(5)
    )).encode()  # fmt: skip


def test_a_late_submission_warns_with_the_days_late(submit_file, scheduled, clock):
    late = submit_file(survey("2024-25"), dataset="survey", period="2024-25")
    assert late.status == "accepted"
    w = warning(late, "late")
    assert (w["days_late"], w["due"]) == (3, (clock().date() - timedelta(days=3)).isoformat())
    assert codes(submit_file(survey("2025-26"), dataset="survey", period="2025-26")) == []
    # A period the schedule does not name, or none declared: nothing to be late for.
    assert codes(submit_file(survey("2023-24"), dataset="survey", period="2023-24")) == []
    assert "late" not in codes(submit_file(survey("2024-25"), dataset="survey"))


def test_lint_knows_the_submission_schedule():
    fields = [
        {"name": "person_id", "type": "string", "role": "identifier"},
        {
            "name": "school_year",
            "type": "string",
            "role": "dimension",
            "constraints": {"enum": ["2024-25", "2025-26"]},
        },
    ]
    doc = agreement_document("lint-schedule", fields, key=["person_id"], period_field="school_year")
    doc["datasets"][0]["submission_schedule"] = {"due": {"2025-26": "2026-08-31"}}
    assert not [f for f in lint(AgreementDocument.model_validate(doc)) if "schedule" in f.path]
    doc["datasets"][0]["submission_schedule"] = {"due": {"2019-20": "2020-08-31"}}
    found = [f for f in lint(AgreementDocument.model_validate(doc)) if "schedule" in f.path]
    assert [(f.code, f.path) for f in found] == [
        ("dead-clause", "datasets.0.submission_schedule.due.2019-20")
    ]
    # A due date that is not a date, or a period the API would not take, is refused outright.
    for due in ({"2025-26": "soon"}, {"2025 26": "2026-08-31"}, {}):
        doc["datasets"][0]["submission_schedule"] = {"due": due}
        with pytest.raises(ValueError):
            AgreementDocument.model_validate(doc)


# -- the same report everywhere -------------------------------------------------------------------


def test_the_receipt_its_replay_and_the_webhook_show_the_same_report(api, session):
    def post(data: bytes, key: str, **params: str) -> Any:
        return api.post(
            URL,
            as_="district-sis",
            content=data,
            params=params,
            headers={"Content-Type": "text/csv", "Idempotency-Key": key},
        )

    first = post(body({"Ashland": 3}), "quality-1", period="2025-26")
    assert first.status_code == 201, first.text
    data = body({"Ashland": 3}, start=1)
    r = post(data, "quality-2", period="2025-26")
    assert r.status_code == 201, r.text
    receipt = r.json()
    codes_ = [w["code"] for w in receipt["quality"]["warnings"]]
    assert codes_ == ["period-overlap", "duplicate-keys"]
    again = post(data, "quality-2", period="2025-26")
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["quality"] == receipt["quality"]
    got = api.get(f"/v1/submissions/{receipt['id']}", as_="district-sis").json()
    assert got["quality"] == receipt["quality"]
    listed = api.get("/v1/submissions", as_="district-sis").json()["items"]
    assert [i["quality"] for i in listed if i["id"] == receipt["id"]] == [receipt["quality"]]
    assert accepted_event(session, receipt["id"])["quality"] == receipt["quality"]


def test_a_rejected_submission_keeps_its_error_report(api, session):
    bad = (HEADER + f"QZ00000001,2025-26,Ashland,{RACE},true,101\n").encode()
    r = api.post(URL, as_="district-sis", content=bad, headers={"Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    event = session.scalars(
        select(NotificationEvent)
        .where(NotificationEvent.type == "submission.rejected")
        .order_by(NotificationEvent.occurred_at.desc())
    ).first()
    assert event is not None
    assert event.data["report"]["counts"] == {"maximum": 1}
    assert "quality" not in event.data


def test_other_parties_are_told_the_warnings_never_the_counts(submit, session):
    """The counts per period and per geography are the submitter's own: a party that receives
    the data under the agreement hears that a submission arrived and which warnings it raised,
    not how many records each neighborhood has (small counts no disclosure rule has passed)."""
    from notifications.models import WebhookDelivery
    from tests.notifications.helpers import subscribe

    subscribe(session, "http://127.0.0.1:9/district", ["submission.accepted"], org="district")
    subscribe(session, "http://127.0.0.1:9/backbone", ["submission.accepted"], org="backbone")
    first = submit(body({"Ashland": 6, "Bayview": 2}), period="2025-26")
    second = submit(body({"Ashland": 6, "Bayview": 2}, start=100), period="2025-26")
    assert "period-overlap" in codes(second)
    told = {}
    for delivery in session.scalars(select(WebhookDelivery)).all():
        event = session.scalars(
            select(NotificationEvent).where(NotificationEvent.seq == delivery.event_seq)
        ).one()
        if event.data["submission"] == second.submission_id:
            told[delivery.organization_id] = event.data["quality"]
    assert told["district"] == second.quality
    assert set(told["backbone"]) == {"rows", "warnings"}
    assert told["backbone"]["rows"] == 8
    assert [w["code"] for w in told["backbone"]["warnings"]] == ["period-overlap"]
    assert "Bayview" not in json.dumps(told["backbone"])
    assert first.submission_id not in json.dumps(told["backbone"])
