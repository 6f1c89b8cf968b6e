"""Results-Based Accountability over HTTP: the demo's results read with the values each reader
may read, writes by their owners only, every read and refusal audited, bad input refused whole.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.actions import AuditAction
from audit.models import AuditEvent
from results.models import ActionItem, PartnerRole, Result, Story, StoryVersion, Strategy

PROBLEM = "application/problem+json"


def _events(session: Session, action: str, resource_id: str | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.action == action)
    if resource_id is not None:
        query = query.where(AuditEvent.resource_id == resource_id)
    return list(session.scalars(query.order_by(AuditEvent.idx)))


def _counts(session: Session) -> dict[str, int]:
    return {
        model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
        for model in (Result, Story, StoryVersion, Strategy, PartnerRole, ActionItem)
    }


def _put(api: Any, path: str, as_: str, body: Any) -> Any:
    return api.client.put(path, headers=api.headers(as_), json=body)


def _patch(api: Any, path: str, as_: str, body: Any) -> Any:
    return api.client.patch(path, headers=api.headers(as_), json=body)


def _problem(r: Any, status: int, kind: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    if kind is not None:
        assert body["type"] == f"/problems/{kind}", body
    return body


NEW_RESULT = {
    "id": "families-stable",
    "title": "Families have stable housing",
    "description": "Every family with young children has a safe and stable home.",
    "population": "Families with children under 9",
    "geography": "Riverton County",
    "public": False,
    "indicators": [{"indicator": "chronic-absenteeism", "role": "secondary"}],
}


def test_the_demo_results_are_read_with_series_trend_and_forecast(api, session):
    r = api.get("/v1/results", as_="backbone-dashboard")
    assert r.status_code == 200, r.text
    listed = {item["id"]: item for item in r.json()}
    assert set(listed) == {"kindergarten-ready", "attend-and-healthy"}
    ready = listed["kindergarten-ready"]
    assert ready["title"] == "Children enter kindergarten ready to learn" and ready["public"]
    assert [i["indicator"] for i in ready["indicators"]] == [
        "kindergarten-readiness",
        "readiness-after-prek",
        "kindergarten-enrollment",
    ]
    readiness = ready["indicators"][0]
    assert readiness["role"] == "primary" and readiness["values_visible"]
    # Baseline, target and direction are the indicator definition's.
    assert readiness["baseline"] == {"period": "2021-22", "value": 50.0}
    assert readiness["target"] == {"period": "2025-26", "value": 60.0}
    assert readiness["direction"] == "increase"
    periods = [p["period"] for p in readiness["points"]]
    assert periods == sorted(periods) and len(periods) == 5
    valued = [p for p in readiness["points"] if p["value"] is not None]
    assert readiness["latest"] == valued[-1]
    change = valued[-1]["value"] - valued[-2]["value"]
    assert readiness["trend"] == ("better" if change > 0 else "worse" if change < 0 else "flat")
    # The target period is reached: the straight line looks three school years ahead.
    assert [f["period"] for f in readiness["forecast"]] == ["2026-27", "2027-28", "2028-29"]

    r = api.get("/v1/results/kindergarten-ready", as_="backbone-dashboard")
    assert r.status_code == 200, r.text
    detail = r.json()
    assert len(detail["stories"]) == 2 and all(s["versions"] is None for s in detail["stories"])
    revised = next(s for s in detail["stories"] if s["author_organization"] == "early-learning")
    assert revised["current"]["version"] == 2 and "gap is closing" in revised["current"]["title"]
    assert len(detail["strategies"]) == 3
    assert all(e["url"].startswith("https://") for s in detail["strategies"] for e in s["evidence"])
    assert {p["organization"] for p in detail["partners"]} == {
        "district",
        "health",
        "early-learning",
    }
    dues = [a["due"] for a in detail["actions"]]
    assert len(dues) == 4 and dues == sorted(dues)

    story = api.get(f"/v1/stories/{revised['id']}", as_="district-dashboard").json()
    assert [v["version"] for v in story["versions"]] == [2, 1]
    assert story["current"] == story["versions"][0]

    for_indicator = api.get(
        "/v1/indicators/readiness-after-prek/stories", as_="district-dashboard"
    ).json()
    assert [s["id"] for s in for_indicator] == [revised["id"]]
    results = api.get("/v1/indicators/chronic-absenteeism/results", as_="district-dashboard")
    assert [x["id"] for x in results.json()] == ["attend-and-healthy"]

    # Every read is audited, and the values through the indicator service's own events.
    assert _events(session, AuditAction.RESULT_READ, "kindergarten-ready")
    assert _events(session, AuditAction.STORY_READ, revised["id"])
    assert _events(session, AuditAction.STORY_READ, "readiness-after-prek")
    assert _events(session, AuditAction.RESULT_READ, "chronic-absenteeism")
    listing = [e for e in _events(session, AuditAction.RESULT_READ) if e.resource_id is None]
    assert listing and listing[-1].counts == {"results": 2}
    assert _events(session, AuditAction.RELEASE_READ, "kindergarten-readiness")


def test_an_indicator_the_reader_may_not_read_is_listed_without_values(api, session):
    # The auditor's dashboard is not a recipient of the health department's births.
    r = api.get("/v1/results/attend-and-healthy", as_="auditor-dashboard")
    assert r.status_code == 200, r.text
    by_id = {i["indicator"]: i for i in r.json()["indicators"]}
    births = by_id["low-birth-weight"]
    assert not births["values_visible"]
    assert births["points"] == [] and births["latest"] is None and births["forecast"] == []
    assert births["target"] == {"period": "2020", "value": 6.5}
    assert by_id["chronic-absenteeism"]["values_visible"]
    denied = _events(session, AuditAction.RELEASE_READ, "low-birth-weight")
    assert denied and denied[-1].outcome == "denied"
    assert denied[-1].organization_id == "auditor"


def test_the_backbone_writes_results_and_a_partner_cannot(api, session):
    before = _counts(session)
    r = api.post("/v1/results", as_="district-data-manager", json=NEW_RESULT)
    _problem(r, 403, "forbidden")
    assert _counts(session) == before
    refused = _events(session, AuditAction.RESULT_WRITE)
    assert refused and refused[-1].outcome == "denied"

    r = api.post("/v1/results", as_="backbone-manager", json=NEW_RESULT)
    assert r.status_code == 201, r.text
    assert r.json()["indicators"] == [
        {"indicator": "chronic-absenteeism", "position": 0, "role": "secondary"}
    ]
    _problem(api.post("/v1/results", as_="backbone-manager", json=NEW_RESULT), 409, "conflict")

    order = [
        {"indicator": "low-birth-weight", "role": "primary"},
        {"indicator": "chronic-absenteeism"},
    ]
    r = _put(api, "/v1/results/families-stable/indicators", "backbone-manager", order)
    assert r.status_code == 200, r.text
    assert [(i["indicator"], i["position"], i["role"]) for i in r.json()["indicators"]] == [
        ("low-birth-weight", 0, "primary"),
        ("chronic-absenteeism", 1, "primary"),
    ]
    _problem(_put(api, "/v1/results/families-stable/indicators", "health-data-manager", []), 403)

    strategy = {
        "title": "Rapid rehousing",
        "evidence": [{"title": "Clearinghouse", "url": "https://example.org/rehousing"}],
        "partners": ["health"],
    }
    r = api.post("/v1/results/families-stable/strategies", as_="backbone-manager", json=strategy)
    assert r.status_code == 201, r.text
    _problem(
        api.post(
            "/v1/results/families-stable/strategies", as_="health-data-manager", json=strategy
        ),
        403,
    )

    action = {"title": "Count families on waiting lists", "owner": "health", "due": "2026-06-30"}
    r = api.post("/v1/results/families-stable/actions", as_="backbone-manager", json=action)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "planned"
    action_id = r.json()["id"]
    r = _patch(api, f"/v1/actions/{action_id}", "backbone-manager", {"status": "in_progress"})
    assert r.status_code == 200 and r.json()["status"] == "in_progress"
    _problem(
        _patch(api, f"/v1/actions/{action_id}", "health-data-manager", {"status": "done"}), 403
    )

    detail = api.get("/v1/results/families-stable", as_="backbone-manager").json()
    assert [s["title"] for s in detail["strategies"]] == ["Rapid rehousing"]
    assert [a["status"] for a in detail["actions"]] == ["in_progress"]
    assert _events(session, AuditAction.RESULT_WRITE, "families-stable")
    assert _events(session, AuditAction.RESULT_ACTION_WRITE, action_id)


def test_a_story_is_revised_by_its_author_organization_only(api, session):
    story = {
        "title": "Attendance after the bus route change",
        "body": "Attendance rose at the two schools on the new route.",
        "as_of": "2026-02-01",
        "indicator": "chronic-absenteeism",
    }
    r = api.post("/v1/results/attend-and-healthy/stories", as_="district-data-manager", json=story)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["author_organization"] == "district" and created["audience"] == "initiative"
    assert created["author_client"] == "district-data-manager"
    story_id = created["id"]

    revision = {"title": "Another view", "body": "Not ours to write.", "as_of": "2026-02-02"}
    r = api.post(f"/v1/stories/{story_id}/versions", as_="elnet-data-manager", json=revision)
    _problem(r, 403, "object-access-denied")
    r = api.post(f"/v1/stories/{story_id}/versions", as_="backbone-manager", json=revision)
    _problem(r, 403, "object-access-denied")
    denied = _events(session, AuditAction.STORY_WRITE, story_id)
    assert len(denied) == 2 and all(e.outcome == "denied" for e in denied)

    revision["body"] = "Attendance rose at both schools; the third joins the route in March."
    r = api.post(f"/v1/stories/{story_id}/versions", as_="district-data-manager", json=revision)
    assert r.status_code == 201, r.text
    read = api.get(f"/v1/stories/{story_id}", as_="health-dashboard").json()
    assert [v["version"] for v in read["versions"]] == [2, 1]
    assert read["current"]["body"].startswith("Attendance rose at both")
    assert read["versions"][1]["body"] == story["body"]
    assert _events(session, AuditAction.STORY_WRITE, f"{story_id}/v2")


def test_a_partner_sets_its_own_role_and_the_backbone_any(api):
    role = {
        "role": "Leads attendance teams.",
        "commitments": [{"text": "Weekly attendance reviews", "due": "2026-09-30"}, {"text": "x"}],
    }
    path = "/v1/results/attend-and-healthy/partners"
    r = _put(api, f"{path}/district", "district-data-manager", role)
    assert r.status_code == 200, r.text
    assert r.json()["commitments"] == [
        {"text": "Weekly attendance reviews", "due": "2026-09-30"},
        {"text": "x", "due": None},
    ]
    _problem(
        _put(api, f"{path}/health", "district-data-manager", role), 403, "object-access-denied"
    )
    r = _put(api, f"{path}/health", "backbone-manager", role)
    assert r.status_code == 200 and r.json()["updated_by"] == "backbone"
    _problem(_put(api, f"{path}/nobody", "backbone-manager", role), 404)
    _problem(_put(api, f"{path}/auditor", "backbone-manager", role), 422, "invalid-input")
    # Without results:write (a dashboard) nothing is written.
    _problem(_put(api, f"{path}/district", "district-dashboard", role), 403, "insufficient-scope")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/results", {**NEW_RESULT, "title": "x" * 301}, 422),
        ("/v1/results", {**NEW_RESULT, "surprise": True}, 422),
        ("/v1/results", {**NEW_RESULT, "id": "Not A Slug"}, 422),
        ("/v1/results", {**NEW_RESULT, "indicators": [{"indicator": "no-such-indicator"}]}, 422),
        (
            "/v1/results",
            {**NEW_RESULT, "indicators": [{"indicator": "low-birth-weight", "role": "main"}]},
            422,
        ),
        (
            "/v1/results/attend-and-healthy/strategies",
            {"title": "t", "evidence": [{"title": "e", "url": "javascript:alert(1)"}]},
            422,
        ),
        (
            "/v1/results/attend-and-healthy/strategies",
            {"title": "t", "evidence": [{"title": "e", "url": "ftp://example.org/x"}]},
            422,
        ),
        ("/v1/results/attend-and-healthy/strategies", {"title": "t", "partners": ["nobody"]}, 422),
        ("/v1/results/no-such-result/strategies", {"title": "t"}, 404),
        ("/v1/results/no-such-result/actions", {"title": "t", "owner": "district"}, 404),
        ("/v1/results/attend-and-healthy/actions", {"title": "t", "owner": "nobody"}, 422),
        (
            "/v1/results/attend-and-healthy/actions",
            {"title": "t", "owner": "district", "status": "abandoned"},
            422,
        ),
        (
            "/v1/results/attend-and-healthy/stories",
            {"title": "t", "body": "b" * 20_001, "as_of": "2026-01-01"},
            422,
        ),
        (
            "/v1/results/attend-and-healthy/stories",
            {
                "title": "t",
                "body": "b",
                "as_of": "2026-01-01",
                "indicator": "kindergarten-readiness",
            },
            422,
        ),
        (
            "/v1/results/attend-and-healthy/stories",
            {"title": "t", "body": "b", "as_of": "2026-01-01", "release": "rel_unknown"},
            422,
        ),
        (
            "/v1/results/no-such-result/stories",
            {"title": "t", "body": "b", "as_of": "2026-01-01"},
            404,
        ),
        (
            "/v1/stories/no-such-story/versions",
            {"title": "t", "body": "b", "as_of": "2026-01-01"},
            404,
        ),
    ],
)
def test_bad_input_is_a_problem_document_and_changes_nothing(api, session, path, body, status):
    before = _counts(session)
    problem = _problem(api.post(path, as_="backbone-manager", json=body), status)
    assert "alert" not in str(problem) and "no-such" not in problem.get("detail", "")
    assert _counts(session) == before


def test_unknown_results_and_indicators_are_not_found(api):
    _problem(api.get("/v1/results/no-such-result", as_="district-dashboard"), 404, "not-found")
    _problem(api.get("/v1/stories/story_unknown", as_="district-dashboard"), 404, "not-found")
    _problem(api.get("/v1/indicators/no-such/stories", as_="district-dashboard"), 404)
    r = _put(api, "/v1/results/no-such-result/indicators", "backbone-manager", [])
    _problem(r, 404, "not-found")
    r = _patch(api, "/v1/actions/action_unknown", "backbone-manager", {"status": "done"})
    _problem(r, 404, "not-found")
    too_many = [{"indicator": "low-birth-weight"}] * 51
    r = _put(api, "/v1/results/attend-and-healthy/indicators", "backbone-manager", too_many)
    _problem(r, 422, "validation-error")
    # Reading needs indicators:read (a data manager has none).
    _problem(api.get("/v1/results", as_="district-data-manager"), 403, "insufficient-scope")
