"""A valid token from another partner must not reach an object that is not theirs, on every
object route; scopes alone are never enough."""

from __future__ import annotations

import pytest

CSV = b"student_id,school_year,neighborhood,race_ethnicity,ready\nQQ00000001,2025-26,Ashland,Asian,true\n"


@pytest.fixture
def district_submission(api) -> str:
    r = api.post(
        "/v1/datasets/kindergarten_readiness/submissions",
        as_="district-sis",
        content=CSV,
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _release_id(api, indicator: str) -> str:
    r = api.get(f"/v1/indicators/{indicator}/releases", as_="backbone-dashboard")
    assert r.status_code == 200, r.text
    return r.json()[0]["id"]


def test_another_partner_cannot_read_or_withdraw_a_submission(api, district_submission):
    assert api.get(f"/v1/submissions/{district_submission}", as_="district-sis").status_code == 200
    r = api.get(f"/v1/submissions/{district_submission}", as_="health-vitals")
    assert r.status_code == 403 and r.json()["type"] == "/problems/object-access-denied"
    r = api.delete(f"/v1/submissions/{district_submission}", as_="health-vitals")
    assert r.status_code == 403
    r = api.delete(f"/v1/submissions/{district_submission}/withdrawal", as_="health-vitals")
    assert r.status_code == 403 and r.json()["type"] == "/problems/object-access-denied"
    # Not withdrawn, and no withdrawal scheduled either (the district's agreement gives notice).
    receipt = api.get(f"/v1/submissions/{district_submission}", as_="district-sis").json()
    assert (receipt["status"], receipt["withdrawal"]) == ("accepted", None)


def test_submission_lists_show_only_the_callers_organization(api, district_submission):
    mine = {
        s["id"]
        for s in api.get("/v1/submissions", as_="district-sis", params={"limit": 500}).json()[
            "items"
        ]
    }
    theirs = {
        s["id"]
        for s in api.get("/v1/submissions", as_="health-vitals", params={"limit": 500}).json()[
            "items"
        ]
    }
    assert district_submission in mine and district_submission not in theirs
    assert theirs and all(s.startswith("sub_") for s in theirs)


def test_a_partner_cannot_submit_to_another_partners_dataset(api):
    r = api.post(
        "/v1/datasets/kindergarten_readiness/submissions",
        as_="health-vitals",
        content=CSV,
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 403 and r.json()["type"] == "/problems/policy-denied"
    decision = r.json()["decision"]
    assert decision["effect"] == "deny"
    assert any(
        f["rule"] == "dataset:submitters" or f["left_operand"] == "assignee"
        for f in decision["failed_constraints"]
    )


def test_agreements_are_visible_to_their_parties_only(api):
    agreement = "district-early-learning-outcomes"
    assert api.get(f"/v1/agreements/{agreement}", as_="district-data-manager").status_code == 200
    for path in (f"/v1/agreements/{agreement}", f"/v1/agreements/{agreement}/versions/1"):
        r = api.get(path, as_="health-data-manager")
        assert r.status_code == 403, path
        assert r.json()["type"] == "/problems/policy-denied"
    listed = {a["id"] for a in api.get("/v1/agreements", as_="health-data-manager").json()}
    assert agreement not in listed and "health-birth-outcomes" in listed


@pytest.mark.parametrize("action", ["suspend", "resume", "terminate"])
def test_a_non_party_cannot_change_an_agreements_status(api, action):
    r = api.post(
        f"/v1/agreements/district-early-learning-outcomes/{action}",
        as_="health-data-manager",
        json={},
    )
    assert r.status_code == 403


def test_a_non_party_cannot_approve(api):
    r = api.get(
        "/v1/agreements/district-early-learning-outcomes/versions/1", as_="district-data-manager"
    )
    body = {"version": 1, "content_hash": r.json()["content_hash"]}
    r = api.post(
        "/v1/agreements/district-early-learning-outcomes/approve",
        as_="health-data-manager",
        json=body,
    )
    assert r.status_code == 403


def test_releases_are_readable_by_recipients_only(api):
    lbw = _release_id(api, "low-birth-weight")
    assert api.get(f"/v1/releases/{lbw}", as_="district-dashboard").status_code == 200
    r = api.get(f"/v1/releases/{lbw}", as_="auditor-dashboard")
    assert r.status_code == 403 and r.json()["type"] == "/problems/policy-denied"
    linked = _release_id(api, "readiness-after-prek")
    assert api.get(f"/v1/releases/{linked}", as_="district-dashboard").status_code == 200
    assert api.get(f"/v1/releases/{linked}", as_="health-dashboard").status_code == 403
    listed = api.get("/v1/indicators/readiness-after-prek/releases", as_="health-dashboard").json()
    assert listed == []


def test_admin_and_audit_routes_need_their_scopes(api):
    for path in ("/v1/organizations", "/v1/clients"):
        r = api.get(path, as_="district-data-manager")
        assert r.status_code == 403 and r.json()["type"] == "/problems/insufficient-scope"
    r = api.get("/v1/audit/events", as_="backbone-manager")
    assert r.status_code == 403
    r = api.post("/v1/clients/district-sis/disable", as_="backbone-manager")
    assert r.status_code == 403


def test_refusals_are_audited(api, district_submission):
    api.get(f"/v1/submissions/{district_submission}", as_="health-vitals")
    events = api.get(
        "/v1/audit/events",
        as_="county-auditor",
        params={"action": "submission.read", "limit": 1000},
    ).json()["items"]
    denied = [e for e in events if e["outcome"] == "denied" and e["organization"] == "health"]
    assert denied and denied[-1]["resource_id"] == district_submission
