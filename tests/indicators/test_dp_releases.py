"""Differentially private releases through the API: planned, charged, stored, never re-noised.

No assertion here depends on the draw of noise: the published cells are checked for properties
that hold for any draw, stored releases are compared with themselves, and the ledger is exact.
What the noise does to the cells is asserted exactly, with injected noise, in
``tests/aggregation/test_dp_release.py``.
"""

from __future__ import annotations


def _release(api, dims, indicator="kindergarten-readiness"):
    return api.post(
        f"/v1/indicators/{indicator}/releases",
        as_="backbone-manager",
        json={"dimensions": dims, "method": "differential_privacy"},
    )


def test_kindergarten_readiness_released_both_ways(api):
    dims = ["school_year", "neighborhood", "race_ethnicity"]
    dp = _release(api, dims)
    assert dp.status_code == 201, dp.text
    body = dp.json()
    assert body["method"] == "differential_privacy"
    assert body["parameters"]["epsilon"] == 1.0
    names = [h["name"] for h in body["headers"]]
    cells = [dict(zip(names, row, strict=True)) for row in body["rows"]]
    assert len(cells) == 6 * 41 * 8
    # Properties of every draw of noise (the engine clips counts at zero and rounds outwards).
    assert {c["status"] for c in cells} <= {"dp", "low_reliability"}
    for c in cells:
        if c["value"] is not None:
            assert 0 <= c["value"] <= 100
            assert c["lower"] <= c["value"] <= c["upper"]
            assert 0 <= c["numerator"] <= c["denominator"]
    sup = api.post(
        "/v1/indicators/kindergarten-readiness/releases",
        as_="backbone-manager",
        json={"dimensions": ["school_year", "race_ethnicity"], "method": "suppression"},
    )
    assert sup.status_code in (200, 201) and sup.json()["method"] == "suppression"

    # Asking again returns the stored release: the same noise, nothing spent.
    budgets_before = api.get("/v1/budgets", as_="backbone-manager").json()
    again = _release(api, dims)
    assert (
        again.status_code == 200
        and again.json()["id"] == body["id"]
        and again.json()["rows"] == body["rows"]
    )
    assert api.get("/v1/budgets", as_="backbone-manager").json() == budgets_before


def test_the_ledger_refuses_a_release_past_the_budget_with_an_explanation(api):
    # The district agreement: epsilon 1.0 per release, 4.0 per school year of data.
    for dims in (
        ["school_year"],
        ["neighborhood"],
        ["race_ethnicity"],
        ["school_year", "neighborhood"],
    ):
        assert _release(api, dims).status_code == 201
    spent = {
        (b["dataset"], b["period"]): b
        for b in api.get("/v1/budgets", as_="district-data-manager").json()
    }
    assert spent[("kindergarten_readiness", "2021-22")]["epsilon_spent"] == 4.0
    assert spent[("kindergarten_readiness", "2021-22")]["epsilon_remaining"] == 0.0
    refused = _release(api, ["school_year", "race_ethnicity"])
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["type"] == "/problems/privacy-budget-exhausted"
    assert (
        problem["budget"]["epsilon_requested"] == 1.0 and problem["budget"]["epsilon_limit"] == 4.0
    )
    assert "0 of 4 left" in problem["detail"]
    # Suppression is not a privacy-budget method and still works.
    ok = api.post(
        "/v1/indicators/kindergarten-readiness/releases",
        as_="backbone-manager",
        json={"dimensions": ["school_year", "race_ethnicity"], "method": "suppression"},
    )
    assert ok.status_code in (200, 201)
    events = api.get(
        "/v1/audit/events", as_="county-auditor", params={"action": "release.create", "limit": 1000}
    ).json()["items"]
    assert any(
        e["outcome"] == "denied" and e["detail"] == "privacy-budget-exhausted" for e in events
    )


def test_a_method_the_agreement_does_not_allow_is_refused(api):
    r = _release(api, ["birth_year"], indicator="low-birth-weight")
    assert r.status_code == 403
    failed = r.json()["decision"]["failed_constraints"]
    assert any(f["left_operand"] == "disclosureMethod" for f in failed)


def test_cross_partner_dp_release_charges_both_agreements(api):
    r = _release(api, ["school_year"], indicator="readiness-after-prek")
    assert r.status_code == 201, r.text
    charged = {
        b["agreement"]
        for b in api.get("/v1/budgets", as_="backbone-manager").json()
        if b["epsilon_spent"] > 0
    }
    assert charged == {"district-early-learning-outcomes", "early-learning-enrollment"}
