"""The dashboard read API: formats by Accept, filters, pagination, ETag, series, budgets."""

from __future__ import annotations

import csv
import io

import pytest


@pytest.fixture
def release_id(api) -> str:
    """The demo's readiness release by school year and neighborhood."""
    for item in api.get(
        "/v1/indicators/kindergarten-readiness/releases", as_="backbone-dashboard"
    ).json():
        if item["dimensions"] == ["school_year", "neighborhood"]:
            return item["id"]
    raise AssertionError("the demo publishes readiness by school year and neighborhood")


def test_json_has_headers_rows_pager_and_provenance(api, release_id):
    r = api.get(f"/v1/releases/{release_id}", as_="backbone-dashboard")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    names = [h["name"] for h in body["headers"]]
    assert names == [
        "school_year",
        "neighborhood",
        "numerator",
        "denominator",
        "value",
        "lower",
        "upper",
        "status",
    ]
    assert body["pager"]["total"] == len(body["rows"]) == 6 * 41
    assert body["provenance"]["agreements"] == [
        {"agreement": "district-early-learning-outcomes", "version": 1}
    ]
    assert body["provenance"]["submissions"] and body["provenance"]["code_version"]
    statuses = {row[-1] for row in body["rows"]}
    assert {"free", "suppressed"} <= statuses <= {"free", "suppressed", "structural_zero"}
    for row in body["rows"]:
        if row[-1] == "suppressed":
            assert row[2] is None and row[3] is None and row[4] is None


def test_csv_and_sdmx_csv_by_accept(api, release_id):
    r = api.get(
        f"/v1/releases/{release_id}", as_="backbone-dashboard", headers={"Accept": "text/csv"}
    )
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 6 * 41 and set(rows[0]) >= {"school_year", "value", "status"}
    r = api.get(
        f"/v1/releases/{release_id}",
        as_="backbone-dashboard",
        headers={"Accept": "application/vnd.sdmx.data+csv; version=2.0.0"},
    )
    assert r.headers["content-type"].startswith("application/vnd.sdmx.data+csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0])[:4] == ["STRUCTURE", "STRUCTURE_ID", "ACTION", "SCHOOL_YEAR"]
    assert (
        rows[0]["STRUCTURE"] == "dataflow"
        and rows[0]["STRUCTURE_ID"] == "BACKBONE:DF_KINDERGARTEN_READINESS(1.0)"
    )
    by_status = {(row["BB_STATUS"], row["OBS_STATUS"], row["CONF_STATUS"]) for row in rows}
    assert ("free", "A", "F") in by_status and ("suppressed", "Q", "C") in by_status
    assert all(row["OBS_VALUE"] == "" for row in rows if row["CONF_STATUS"] in ("C", "D"))
    assert (
        api.get(
            f"/v1/releases/{release_id}", as_="backbone-dashboard", headers={"Accept": "image/png"}
        ).status_code
        == 406
    )
    r = api.get(
        f"/v1/releases/{release_id}",
        as_="backbone-dashboard",
        headers={"Accept": "text/csv;q=0.5, application/json"},
    )
    assert r.headers["content-type"] == "application/json"


def test_filters_and_pagination(api, release_id):
    r = api.get(
        f"/v1/releases/{release_id}",
        as_="backbone-dashboard",
        params={"filter": ["neighborhood:Ashland,_T"], "page_size": 5},
    )
    body = r.json()
    assert body["pager"] == {"page": 1, "page_size": 5, "total": 12, "page_count": 3}
    assert all(row[1] in ("Ashland", "_T") for row in body["rows"])
    assert 'rel="next"' in r.headers["link"] and "page=2" in r.headers["link"]
    last = api.get(
        f"/v1/releases/{release_id}", as_="backbone-dashboard",
        params={"filter": ["neighborhood:Ashland,_T"], "page_size": 5, "page": 3},
    )  # fmt: skip
    assert len(last.json()["rows"]) == 2 and "link" not in last.headers
    bad = api.get(
        f"/v1/releases/{release_id}", as_="backbone-dashboard", params={"filter": "shoe_size:9"}
    )
    assert bad.status_code == 422


def test_etag_revalidation_still_authorizes_and_audits(api, release_id):
    r = api.get(f"/v1/releases/{release_id}", as_="backbone-dashboard")
    etag = r.headers["etag"]
    assert r.headers["cache-control"] == "private, no-cache"
    again = api.get(
        f"/v1/releases/{release_id}", as_="backbone-dashboard", headers={"If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""
    other = api.get(
        f"/v1/releases/{release_id}", as_="backbone-dashboard", headers={"Accept": "text/csv"}
    )
    assert other.headers["etag"] != etag
    linked = api.get(
        "/v1/indicators/readiness-after-prek/releases", as_="district-dashboard"
    ).json()[0]["id"]
    tag = api.get(f"/v1/releases/{linked}", as_="district-dashboard").headers["etag"]
    # A valid ETag is no key: a non-recipient is refused, not told "not modified".
    assert (
        api.get(
            f"/v1/releases/{linked}", as_="health-dashboard", headers={"If-None-Match": tag}
        ).status_code
        == 403
    )
    events = api.get(
        "/v1/audit/events", as_="county-auditor", params={"action": "release.read", "limit": 1000}
    ).json()["items"]
    mine = [
        e for e in events if e["resource_id"] == release_id and e["client"] == "backbone-dashboard"
    ]
    assert len(mine) >= 3


def test_series_with_baseline_and_target(api):
    r = api.get("/v1/indicators/kindergarten-readiness/series", as_="district-dashboard")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [p["period"] for p in body["points"]] == [
        "2021-22",
        "2022-23",
        "2023-24",
        "2024-25",
        "2025-26",
    ]
    assert (
        body["baseline"] == {"period": "2021-22", "value": 50.0} and body["target"]["value"] == 60.0
    )
    for p in body["points"]:
        assert (p["status"] == "free") == (p["value"] is not None)
        assert p["value"] is None or 20 < p["value"] < 80
    r = api.get(
        "/v1/indicators/kindergarten-readiness/series",
        as_="district-dashboard",
        params={"filter": "neighborhood:Bayview"},
    )
    assert {p["neighborhood"] for p in r.json()["points"]} == {"Bayview"}
    assert api.get("/v1/indicators/kindergarten-readiness/series", as_="district-dashboard",
                   params={"filter": "neighborhood:Bayview,Central"}).status_code == 422  # fmt: skip
    assert (
        api.get("/v1/indicators/low-birth-weight/series", as_="auditor-dashboard").status_code
        == 403
    )


def test_budgets_are_listed_for_parties(api):
    assert api.get("/v1/budgets", as_="backbone-manager").status_code == 200
    # The demo's one differentially private release (chronic absenteeism, to the public) has
    # spent epsilon 1 of each school year's attendance budget; nothing else is charged.
    budgets = api.get("/v1/budgets", as_="district-data-manager").json()
    assert {(b["dataset"], b["epsilon_spent"], b["epsilon_limit"]) for b in budgets} == {
        ("attendance", 1.0, 4.0)
    }
    assert len(budgets) == 5
    assert api.get("/v1/budgets", as_="health-data-manager").json() == []
