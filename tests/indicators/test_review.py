"""Review before publication ("no surprises"): the demo's health agreement has its releases
reviewed by the health department for 10 days, then published if nobody answered.

A held release is stored but unreadable by recipients on every read path; the provider's data
managers read it and what changed, and approve or object; another organization's data manager
is answered as for a release that does not exist.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.agreements.helpers import amend
from tests.conftest import Clock

FORMATS = {
    "json": "application/json",
    "csv": "text/csv",
    "sdmx": "application/vnd.sdmx.data+csv; version=2.0.0",
}
RECIPIENTS = ("health-dashboard", "district-dashboard", "backbone-dashboard")
NEIGHBORHOODS = ("Ashland", "Bayview", "Central", "Riverside")


def _births(count: int = 60, seed: int = 3) -> bytes:
    rng = random.Random(seed)
    lines = ["child_id,birth_year,neighborhood,race_ethnicity,birth_weight_grams"]
    for _ in range(count):
        lines.append(
            f"LB{rng.randrange(10**8):08d},2020,{rng.choice(NEIGHBORHOODS)},White,"
            f"{rng.randint(1800, 4200)}"
        )
    return ("\n".join(lines) + "\n").encode()


def _submit_births(api: Any, seed: int = 3) -> None:
    r = api.post(
        "/v1/datasets/births/submissions?period=2020",
        as_="health-vitals",
        content=_births(seed=seed),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text


def _request(api: Any, dims: list[str], indicator: str = "low-birth-weight", **extra: Any) -> Any:
    return api.post(
        f"/v1/indicators/{indicator}/releases",
        as_="backbone-manager",
        json={"dimensions": dims, **extra},
    )


def _held(api: Any, dims: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    r = _request(api, dims or ["birth_year"], **extra)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "pending_review" and "rows" not in body
    assert r.headers["location"] == f"/v1/releases/{body['id']}"
    return body


def _events(api: Any, action: str) -> list[dict[str, Any]]:
    return api.get(
        "/v1/audit/events", as_="county-auditor", params={"action": action, "limit": 1000}
    ).json()["items"]


def _not_published(r: Any, state: str = "pending_review") -> None:
    assert r.status_code == 409, r.text
    assert r.json()["type"] == "/problems/release-not-published"
    assert r.json()["state"] == state


def test_seeded_releases_under_review_were_approved_and_are_published(api):
    listed = api.get("/v1/indicators/low-birth-weight/releases", as_="health-dashboard").json()
    assert listed and all(item["state"] == "published" for item in listed)
    for item in listed:
        review = item["review"]
        assert review["state"] == "published" and review["awaiting"] == []
        assert [r["organization"] for r in review["reviewers"]] == ["health"]
        assert review["reviewers"][0]["decision"] == "approve"
        assert "reason" not in review["reviewers"][0]  # reasons are not for recipients
    # An agreement without review: published at once, no review.
    readiness = api.get(
        "/v1/indicators/kindergarten-readiness/releases", as_="district-dashboard"
    ).json()
    assert readiness and all(i["state"] == "published" and i["review"] is None for i in readiness)


def test_a_held_release_is_unreadable_by_recipients_on_every_read_path(api):
    before = api.get("/v1/indicators/low-birth-weight/series", as_="backbone-dashboard").json()
    held = _held(api)
    assert held["review"]["awaiting"] == ["health"]
    assert held["review"]["reviewers"][0]["on_timeout"] == "publish"
    rid = held["id"]
    for reader in RECIPIENTS:
        for media in FORMATS.values():
            _not_published(api.get(f"/v1/releases/{rid}", as_=reader, headers={"Accept": media}))
        listed = api.get("/v1/indicators/low-birth-weight/releases", as_=reader).json()
        assert rid not in {item["id"] for item in listed}
        series = api.get("/v1/indicators/low-birth-weight/series", as_=reader).json()
        assert rid not in series["releases"]
    # The series is what it was: the held release contributes no point.
    after = api.get("/v1/indicators/low-birth-weight/series", as_="backbone-dashboard").json()
    assert after["points"] == before["points"]
    # Not a recipient at all: refused as before, by the policy.
    r = api.get(f"/v1/releases/{rid}", as_="auditor-dashboard")
    assert r.status_code == 403 and r.json()["type"] == "/problems/policy-denied"
    # The requester sees it in its listing with its state and reviews, never its cells.
    mine = api.get("/v1/indicators/low-birth-weight/releases", as_="backbone-manager").json()
    item = next(i for i in mine if i["id"] == rid)
    assert item["state"] == "pending_review" and "rows" not in item and "cells" not in item
    # Asking again returns the held release, computed once.
    again = _request(api, ["birth_year"])
    assert again.status_code == 202 and again.json()["id"] == rid
    assert again.json()["state"] == "pending_review"
    stored = [e for e in _events(api, "release.create") if e["resource_id"] == rid]
    assert [e["detail"] for e in stored] == [None, "returned the stored release"]
    assert [e["resource_id"] for e in _events(api, "release.hold")][-1] == rid
    refused = [e for e in _events(api, "release.read") if e["resource_id"] == rid]
    assert refused and all(e["outcome"] != "succeeded" for e in refused)
    assert {e["detail"] for e in refused} == {"release-not-published", "policy-denied"}


def test_the_providers_data_manager_reviews_what_changed_and_approves(api):
    _submit_births(api)
    held = _held(api, ["birth_year", "neighborhood"])
    rid = held["id"]
    pending = api.get("/v1/reviews", as_="health-data-manager").json()
    assert rid in {i["id"] for i in pending}
    assert next(i for i in pending if i["id"] == rid)["decision"] is None

    r = api.get(f"/v1/releases/{rid}/review", as_="health-data-manager")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["state"] == "pending_review"
    names = [h["name"] for h in doc["headers"]]
    assert names[:2] == ["birth_year", "neighborhood"]
    # Exactly the protected cells, and what changed against the seeded published release.
    changes = doc["changes"]
    seeded = next(
        i
        for i in api.get("/v1/indicators/low-birth-weight/releases", as_="health-dashboard").json()
        if i["dimensions"] == ["birth_year", "neighborhood"]
    )
    assert changes["against"] == seeded["id"]
    assert changes["counts"]["changed"] >= 1
    assert sum(changes["counts"].values()) == len(doc["rows"]) == len(changes["cells"])
    previous = api.get(f"/v1/releases/{seeded['id']}", as_="health-dashboard").json()
    previous_cells = {
        tuple(row[:2]): {"value": row[names.index("value")], "status": row[-1]}
        for row in previous["rows"]
    }
    for cell in changes["cells"]:
        key = (cell["birth_year"], cell["neighborhood"])
        assert cell["previous"] == previous_cells[key]
        if cell["change"] == "unchanged":
            assert cell["new"] == cell["previous"]
    for row in doc["rows"]:
        if row[-1] == "suppressed":
            assert row[2] is None and row[3] is None and row[4] is None

    r = api.post(f"/v1/releases/{rid}/review/approve", as_="health-data-manager", json={})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "published" and r.json()["review"]["awaiting"] == []
    # Readable now, by every recipient and in every format; the review is on the release.
    for reader in RECIPIENTS:
        for media in FORMATS.values():
            got = api.get(f"/v1/releases/{rid}", as_=reader, headers={"Accept": media})
            assert got.status_code == 200, got.text
    body = api.get(f"/v1/releases/{rid}", as_="backbone-dashboard").json()
    assert body["state"] == "published" and body["review"]["reviewers"][0]["decision"] == "approve"
    assert [h["name"] for h in body["headers"]] == names and body["rows"] == doc["rows"]
    listed = api.get("/v1/indicators/low-birth-weight/releases", as_="health-dashboard").json()
    assert rid in {i["id"] for i in listed}
    series = api.get(
        "/v1/indicators/low-birth-weight/series",
        as_="backbone-dashboard",
        params={"filter": "neighborhood:Ashland"},
    ).json()
    assert rid in series["releases"]

    # The review is closed; the listing has moved it to the decided ones.
    again = api.post(f"/v1/releases/{rid}/review/approve", as_="health-data-manager")
    assert again.status_code == 409 and again.json()["type"] == "/problems/review-closed"
    assert rid not in {i["id"] for i in api.get("/v1/reviews", as_="health-data-manager").json()}
    decided = api.get("/v1/reviews?state=decided", as_="health-data-manager").json()
    assert next(i for i in decided if i["id"] == rid)["decision"] == "approve"

    assert rid in {e["resource_id"] for e in _events(api, "release.review.read")}
    approvals = [e for e in _events(api, "release.review.approve") if e["resource_id"] == rid]
    assert [(e["outcome"], e["client"]) for e in approvals] == [
        ("succeeded", "health-data-manager"),
        ("rejected", "health-data-manager"),
    ]
    published = [e for e in _events(api, "release.publish") if e["resource_id"] == rid]
    assert [e["detail"] for e in published] == ["approved by every reviewer"]


def test_another_organization_gets_the_answer_a_missing_release_gets(api):
    rid = _held(api)["id"]
    missing = "rel_00000000000000000000000000"
    for path, method in (
        ("review", "get"),
        ("review/approve", "post"),
        ("review/object", "post"),
    ):
        kwargs = {"json": {"reason": "no"}} if method == "post" else {}
        theirs = getattr(api, method)(
            f"/v1/releases/{rid}/{path}", as_="district-data-manager", **kwargs
        )
        nothing = getattr(api, method)(
            f"/v1/releases/{missing}/{path}", as_="district-data-manager", **kwargs
        )
        assert theirs.status_code == nothing.status_code == 404
        strip = {"instance", "request_id"}
        assert {k: v for k, v in theirs.json().items() if k not in strip} == {
            k: v for k, v in nothing.json().items() if k not in strip
        }
    assert rid not in {i["id"] for i in api.get("/v1/reviews", as_="district-data-manager").json()}
    # A dashboard of the provider cannot review: that takes the data manager's scope.
    r = api.get(f"/v1/releases/{rid}/review", as_="health-dashboard")
    assert r.status_code == 403 and r.json()["type"] == "/problems/insufficient-scope"
    denied = [
        e
        for e in _events(api, "release.review.read")
        if e["resource_id"] == rid and e["organization"] == "district"
    ]
    assert denied and all(e["outcome"] == "denied" for e in denied)
    # Still held, nothing decided.
    _not_published(api.get(f"/v1/releases/{rid}", as_="health-dashboard"))


def test_an_objection_leaves_the_release_unpublished_and_a_new_request_follows(api):
    rid = _held(api)["id"]
    r = api.post(f"/v1/releases/{rid}/review/object", as_="health-data-manager", json={})
    assert r.status_code == 422
    r = api.post(
        f"/v1/releases/{rid}/review/object",
        as_="health-data-manager",
        json={"reason": "  "},
    )
    assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-input"
    r = api.post(
        f"/v1/releases/{rid}/review/object",
        as_="health-data-manager",
        json={"reason": "The 2020 births are incomplete until March."},
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "objected"
    assert r.json()["review"]["reviewers"][0]["reason"].startswith("The 2020 births")
    for reader in RECIPIENTS:
        _not_published(api.get(f"/v1/releases/{rid}", as_=reader), "objected")
    closed = api.post(f"/v1/releases/{rid}/review/approve", as_="health-data-manager")
    assert closed.status_code == 409 and closed.json()["type"] == "/problems/review-closed"
    # Stored and audited: the reviewer still reads it, the requester sees why.
    assert api.get(f"/v1/releases/{rid}/review", as_="health-data-manager").json()["state"] == (
        "objected"
    )
    mine = api.get("/v1/indicators/low-birth-weight/releases", as_="backbone-manager").json()
    item = next(i for i in mine if i["id"] == rid)
    assert item["state"] == "objected" and item["review"]["reviewers"][0]["reason"]
    objections = [e for e in _events(api, "release.review.object") if e["resource_id"] == rid]
    assert [e["outcome"] for e in objections] == ["rejected", "rejected", "succeeded"]
    assert "incomplete" not in str(objections[0])  # the reason stays out of the log
    assert rid not in {e["resource_id"] for e in _events(api, "release.publish")}
    # The same request again is a new release, held again.
    new = _held(api)
    assert new["id"] != rid
    _not_published(api.get(f"/v1/releases/{rid}", as_="health-dashboard"), "objected")


def test_the_window_passes_under_publish(api, clock: Clock):
    rid = _held(api)["id"]
    # A dashboard that asked while it was held is not served a stale answer afterwards.
    _not_published(api.get(f"/v1/releases/{rid}", as_="health-dashboard"))
    clock.advance(days=9, hours=23)
    _not_published(api.get(f"/v1/releases/{rid}", as_="health-dashboard"))
    clock.advance(hours=2)
    r = api.get(f"/v1/releases/{rid}", as_="health-dashboard")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "published"
    assert r.json()["review"]["reviewers"][0]["decision"] is None
    published = [e for e in _events(api, "release.publish") if e["resource_id"] == rid]
    assert [e["detail"] for e in published] == ["the review window passed"]
    closed = api.post(f"/v1/releases/{rid}/review/approve", as_="health-data-manager")
    assert closed.status_code == 409


def test_the_window_passes_under_hold(api, clock: Clock):
    def hold(doc: dict[str, Any]) -> None:
        doc["publication_review"]["on_timeout"] = "hold"

    amend(api, "health-birth-outcomes", hold, ("health-data-manager", "backbone-manager"))
    rid = _held(api)["id"]
    clock.advance(days=30)
    _not_published(api.get(f"/v1/releases/{rid}", as_="health-dashboard"))
    assert rid not in {
        i["id"]
        for i in api.get("/v1/indicators/low-birth-weight/releases", as_="health-dashboard").json()
    }
    pending = api.get("/v1/reviews", as_="health-data-manager").json()
    assert next(i for i in pending if i["id"] == rid)["on_timeout"] == "hold"
    # Late, but the provider may still approve: then it is published.
    r = api.post(f"/v1/releases/{rid}/review/approve", as_="health-data-manager")
    assert r.status_code == 200 and r.json()["state"] == "published"
    assert api.get(f"/v1/releases/{rid}", as_="health-dashboard").status_code == 200


def test_a_held_dp_release_has_charged_the_budget(api):
    def review(doc: dict[str, Any]) -> None:
        doc["publication_review"] = {"required": True, "window_days": 5, "on_timeout": "hold"}

    amend(
        api,
        "district-early-learning-outcomes",
        review,
        ("district-data-manager", "backbone-manager"),
    )
    before = {
        (b["dataset"], b["period"]): b["epsilon_spent"]
        for b in api.get("/v1/budgets", as_="district-data-manager").json()
    }
    held = _request(
        api, ["school_year"], indicator="kindergarten-readiness", method="differential_privacy"
    )
    assert held.status_code == 202, held.text
    rid = held.json()["id"]
    after = {
        (b["dataset"], b["period"]): b["epsilon_spent"]
        for b in api.get("/v1/budgets", as_="district-data-manager").json()
    }
    assert after[("kindergarten_readiness", "2025-26")] == pytest.approx(
        before.get(("kindergarten_readiness", "2025-26"), 0.0) + 1.0
    )
    _not_published(api.get(f"/v1/releases/{rid}", as_="district-dashboard"))
    # Asking again returns the held release: no new noise, nothing more spent.
    again = _request(
        api, ["school_year"], indicator="kindergarten-readiness", method="differential_privacy"
    )
    assert again.status_code == 202 and again.json()["id"] == rid
    assert {
        (b["dataset"], b["period"]): b["epsilon_spent"]
        for b in api.get("/v1/budgets", as_="district-data-manager").json()
    } == after
    doc = api.get(f"/v1/releases/{rid}/review", as_="district-data-manager").json()
    assert {row[-1] for row in doc["rows"]} <= {"dp", "low_reliability"}
    r = api.post(f"/v1/releases/{rid}/review/approve", as_="district-data-manager")
    assert r.json()["state"] == "published"
    body = api.get(f"/v1/releases/{rid}", as_="district-dashboard").json()
    assert body["rows"] == doc["rows"]
