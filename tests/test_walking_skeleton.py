"""The walking skeleton: every step of the thin path through the system, over HTTP."""

from __future__ import annotations

import polars as pl
import pytest

from demo.generator import generate
from demo.initiative import NEIGHBORHOODS
from tests.conftest import SMALL_BIRTHS

pytestmark = pytest.mark.slow

CSV = (
    "student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"
    "ZZ00000001,2025-26,Ashland,Asian,true,81\n"
    "ZZ00000002,2025-26,Ashland,White,false,52\n"
    "ZZ00000003,2025-26,Central,Hispanic or Latino,true,77\n"
)

COUNT_INDICATOR = {
    "id": "assessed-by-neighborhood",
    "title": "Kindergartners assessed, by neighborhood",
    "unit": "count",
    "purpose": "dpv:PublicBenefit",
    "recipients": ["backbone", "district"],
    "numerator": {"dataset": "kindergarten_readiness"},
    "dimensions": ["neighborhood"],
}


def test_partner_submits_backbone_publishes_dashboard_reads_auditor_sees_it_all(api):
    # A partner system gets a token by client credentials and submits a small CSV batch.
    r = api.post(
        "/v1/datasets/kindergarten_readiness/submissions",
        as_="district-sis",
        content=CSV.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert receipt["row_count"] == 3
    assert receipt["agreement"] == {"id": "district-early-learning-outcomes", "version": 1}
    assert r.headers["location"] == f"/v1/submissions/{receipt['id']}"

    # The backbone defines a count indicator by neighborhood and publishes it.
    r = api.post("/v1/indicators", as_="backbone-manager", json=COUNT_INDICATOR)
    assert r.status_code == 201, r.text
    r = api.post(
        f"/v1/indicators/{COUNT_INDICATOR['id']}/releases", as_="backbone-manager", json={}
    )
    assert r.status_code == 201, r.text
    release = r.json()
    k = release["parameters"]["min_cell_size"]
    assert k == 10

    # Cells under k are suppressed; every published count is the true distinct count.
    data = generate(births_per_year=SMALL_BIRTHS).kindergarten_readiness
    extra = pl.DataFrame(
        {
            "student_id": ["ZZ00000001", "ZZ00000002", "ZZ00000003"],
            "neighborhood": ["Ashland", "Ashland", "Central"],
        }
    )
    truth = (
        pl.concat([data.select("student_id", "neighborhood"), extra])
        .group_by("neighborhood")
        .agg(pl.col("student_id").n_unique().alias("n"))
    )
    expected = dict(zip(truth["neighborhood"], truth["n"], strict=True))
    names = [h["name"] for h in release["headers"]]
    cells = [dict(zip(names, row, strict=True)) for row in release["rows"]]
    assert len(cells) == len(NEIGHBORHOODS) + 1
    small = 0
    for cell in cells:
        if cell["neighborhood"] == "_T":
            continue
        true = expected.get(cell["neighborhood"], 0)
        if true < k:
            small += 1
            assert (
                cell["status"] == "suppressed"
                and cell["numerator"] is None
                and cell["value"] is None
            )
        elif cell["status"] == "free":
            assert cell["numerator"] == true
        else:
            # Withheld to protect a small cell: the same status, so it tells nothing.
            assert cell["status"] == "suppressed" and cell["numerator"] is None
    assert small > 0, "the demo data must exercise suppression"

    # A dashboard client of a recipient organization reads the release.
    r = api.get(f"/v1/releases/{release['id']}", as_="backbone-dashboard")
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == release["rows"]

    # The auditor lists the audit events of all of the above.
    r = api.get(
        "/v1/audit/events",
        as_="county-auditor",
        params={"limit": 1000, "after": receipt["audit_index"] - 2},
    )
    assert r.status_code == 200, r.text
    events = r.json()["items"]
    actions = [(e["organization"], e["action"], e["outcome"]) for e in events]
    assert ("district", "submission.create", "succeeded") in actions
    assert ("backbone", "indicator.define", "succeeded") in actions
    assert ("backbone", "release.create", "succeeded") in actions
    assert ("backbone", "release.read", "succeeded") in actions
    assert ("district", "oauth.token", "succeeded") in actions
    indexes = [e["index"] for e in events]
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
    submitted = next(e for e in events if e["action"] == "submission.create")
    assert submitted["index"] == receipt["audit_index"]
    assert submitted["resource_id"] == receipt["id"]
    # No record value or raw identifier appears anywhere in the log.
    assert "ZZ00000001" not in r.text and "Ashland" not in str(submitted)
