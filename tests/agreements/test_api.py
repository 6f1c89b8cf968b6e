"""Agreements over HTTP: schema, lint, lifecycle, ODRL, governance, what-if decisions."""

from __future__ import annotations

import copy
from datetime import timedelta
from importlib import resources
from typing import Any

import yaml

CSV = b"student_id,school_year,neighborhood,race_ethnicity,ready\nQQ00000009,2025-26,Ashland,Asian,true\n"

TRACT_AGREEMENT: dict[str, Any] = {
    "uid": "tract-pilot",
    "title": "Tract-level pilot",
    "legal_basis": "public-task",
    "clauses": {"purpose": "Pilot of finer geography."},
    "parties": [{"org": "district", "role": "assigner"}, {"org": "backbone", "role": "assignee"}],
    "term": {"effective": "2025-01-01", "expires": "2030-01-01"},
    "datasets": [
        {
            "name": "tract_readiness",
            "provider": "district",
            "fields": [
                {"name": "student_id", "role": "identifier"},
                {
                    "name": "tract",
                    "role": "dimension",
                    "geography": "tract",
                    "constraints": {"enum": ["t1", "t2"]},
                },
                {
                    "name": "neighborhood",
                    "role": "dimension",
                    "geography": "neighborhood",
                    "constraints": {"enum": ["a", "b"]},
                },
                {"name": "ready", "type": "boolean", "role": "measure"},
            ],
        }
    ],
    "rules": {
        "permission": [
            {
                "id": "submit",
                "action": "submit",
                "target": "tract_readiness",
                "assignee": "district",
            },
            {
                "id": "publish",
                "action": "publish",
                "target": "tract_readiness",
                "assignee": "backbone",
                "constraint": [
                    {
                        "leftOperand": "purpose",
                        "operator": "isAnyOf",
                        "rightOperand": ["dpv:PublicBenefit"],
                    },
                    {
                        "leftOperand": "recipient",
                        "operator": "isPartOf",
                        "rightOperand": ["district", "backbone"],
                    },
                    {
                        "leftOperand": "spatialGranularity",
                        "operator": "gteq",
                        "rightOperand": "neighborhood",
                    },
                ],
            },
        ]
    },
    "disclosure": {"min_cell_size": 10},
}


def _create(api, document: dict[str, Any], as_: str = "backbone-manager"):
    return api.post(
        "/v1/agreements",
        as_=as_,
        content=yaml.safe_dump(document).encode(),
        headers={"Content-Type": "application/yaml"},
    )


def _approve(api, agreement: str, version: int, as_: str):
    doc = api.get(f"/v1/agreements/{agreement}/versions/{version}", as_=as_).json()
    return api.post(
        f"/v1/agreements/{agreement}/approve",
        as_=as_,
        json={"version": version, "content_hash": doc["content_hash"]},
    )


def _activate(api, document: dict[str, Any]) -> dict[str, Any]:
    r = _create(api, document)
    assert r.status_code == 201, r.text
    version = r.json()["version"]
    assert _approve(api, document["uid"], version, "district-data-manager").status_code == 200
    r = _approve(api, document["uid"], version, "backbone-manager")
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    return r.json()


def test_schema_is_published_with_its_vocabulary(client, api):
    r = api.get("/v1/agreements/schema", as_="district-data-manager")
    schema = r.json()
    assert schema["type"] == "object" and "parties" in schema["properties"]
    assert "dpv:PublicBenefit" in schema["x-vocabulary"]["purposes"]
    assert "isPartOf" in schema["x-vocabulary"]["operators"]


def test_demo_agreements_are_active_and_fully_approved(api):
    for agreement, parties in (
        ("district-early-learning-outcomes", ["backbone", "district"]),
        ("health-birth-outcomes", ["backbone", "health"]),
    ):
        body = api.get(f"/v1/agreements/{agreement}", as_="backbone-manager").json()
        v1 = body["versions"][0]
        assert v1["status"] == "active" and v1["approved_by"] == parties and v1["awaiting"] == []
        assert [h["status"] for h in body["history"]] == ["draft", "proposed", "active"]


def test_lint_findings_are_a_422_and_nothing_is_stored(api):
    bad = copy.deepcopy(TRACT_AGREEMENT)
    bad["disclosure"]["min_cell_size"] = 2
    bad["rules"]["permission"][1]["constraint"][0]["rightOperand"] = ["dpv:Nonsense"]
    r = _create(api, bad)
    assert r.status_code == 422
    body = r.json()
    assert body["type"] == "/problems/invalid-agreement"
    assert {f["code"] for f in body["findings"]} == {"k-below-floor", "unknown-term"}
    assert api.get("/v1/agreements/tract-pilot", as_="backbone-manager").status_code == 404
    r = api.post(
        "/v1/agreements/lint",
        as_="backbone-manager",
        content=yaml.safe_dump(bad).encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 200 and len(r.json()["findings"]) == 2


def test_an_agreement_without_a_minimum_cell_size_is_refused(api):
    # Fail closed: no threshold is assumed (it used to be 11); the agreement must state one.
    no_value = copy.deepcopy(TRACT_AGREEMENT)
    no_value["disclosure"] = {"methods": ["suppression"]}
    no_section = {k: v for k, v in copy.deepcopy(TRACT_AGREEMENT).items() if k != "disclosure"}
    for document in (no_value, no_section):
        r = _create(api, document)
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["type"] == "/problems/invalid-agreement"
        assert [(f["code"], f["path"]) for f in body["findings"]] == [
            ("missing-min-cell-size", "disclosure.min_cell_size")
        ]
    assert api.get("/v1/agreements/tract-pilot", as_="backbone-manager").status_code == 404


def test_malformed_and_mistyped_documents(api):
    r = api.post(
        "/v1/agreements",
        as_="backbone-manager",
        content=b"uid: [unclosed",
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 422 and r.json()["findings"][0]["code"] == "syntax"
    r = api.post(
        "/v1/agreements",
        as_="backbone-manager",
        content=b"{}",
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 415
    r = api.post("/v1/agreements", as_="backbone-manager", json={"uid": "x", "title": "t"})
    assert r.status_code == 422 and all(f["code"] == "schema" for f in r.json()["findings"])


def test_activation_needs_every_party_to_approve_the_exact_version(api):
    r = _create(api, TRACT_AGREEMENT)
    assert r.status_code == 201 and r.json()["status"] == "draft"
    stale = api.post(
        "/v1/agreements/tract-pilot/approve",
        as_="district-data-manager",
        json={"version": 1, "content_hash": "sha256:" + "0" * 64},
    )
    assert stale.status_code == 409
    assert _approve(api, "tract-pilot", 1, "district-data-manager").json()["status"] == "proposed"
    again = _approve(api, "tract-pilot", 1, "district-data-manager")
    assert again.status_code == 409
    assert _approve(api, "tract-pilot", 1, "backbone-manager").json()["status"] == "active"
    assert _approve(api, "tract-pilot", 1, "backbone-manager").status_code == 409


def test_an_amendment_supersedes_and_history_answers_which_version_governed(api, clock):
    _activate(api, TRACT_AGREEMENT)
    first_active = clock.now
    clock.advance(days=1)
    amended = copy.deepcopy(TRACT_AGREEMENT)
    amended["title"] = "Tract-level pilot, amended"
    amended["disclosure"]["min_cell_size"] = 20
    clock.advance(days=1)
    body = _activate(api, amended)
    assert body["version"] == 2
    versions = api.get("/v1/agreements/tract-pilot", as_="district-data-manager").json()["versions"]
    assert [v["status"] for v in versions] == ["superseded", "active"]

    def at(t):
        return api.get(
            "/v1/agreements/tract-pilot/governing",
            as_="district-data-manager",
            params={"at": t.isoformat()},
        ).json()["version"]

    assert at(first_active + timedelta(hours=1))["version"] == 1
    assert at(clock.now)["version"] == 2
    assert at(first_active - timedelta(days=1)) is None


def test_a_geography_finer_than_permitted_is_refused_with_reasons(api):
    _activate(api, TRACT_AGREEMENT)
    definition = {
        "id": "tract-readiness",
        "title": "Readiness by tract",
        "unit": "count",
        "purpose": "dpv:PublicBenefit",
        "recipients": ["district"],
        "numerator": {"dataset": "tract_readiness"},
        "dimensions": ["tract"],
    }
    r = api.post("/v1/indicators", as_="backbone-manager", json=definition)
    assert r.status_code == 403, r.text
    failed = r.json()["decision"]["failed_constraints"]
    assert {
        "agreement": "tract-pilot",
        "version": 1,
        "rule": "publish",
        "dataset": "tract_readiness",
        "left_operand": "spatialGranularity",
        "operator": "gteq",
        "expected": "neighborhood",
        "actual": "tract",
    } in failed
    assert "neighborhood" in r.json()["detail"]
    r = api.post(
        "/v1/indicators",
        as_="backbone-manager",
        json={**definition, "id": "hood-readiness", "dimensions": ["neighborhood"]},
    )
    assert r.status_code == 201, r.text


def test_a_partner_cannot_submit_a_field_its_agreement_does_not_list(api):
    r = api.post(
        "/v1/datasets/kindergarten_readiness/submissions",
        as_="district-sis",
        content=b"student_id,school_year,neighborhood,race_ethnicity,ready,free_lunch\nQQ00000001,2025-26,Ashland,Asian,true,yes\n",
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 403
    failed = r.json()["decision"]["failed_constraints"]
    assert failed[0]["rule"] == "dataset:fields" and failed[0]["actual"] == "1 unlisted field(s)"
    # The column is named (a column name is not a value); the record's values never are.
    assert "Unlisted column(s): free_lunch." in r.json()["detail"]
    assert "QQ00000001" not in r.text and "yes" not in r.text


def _submit(api):
    return api.post(
        "/v1/datasets/kindergarten_readiness/submissions",
        as_="district-sis",
        content=CSV,
        headers={"Content-Type": "text/csv"},
    )


def test_suspension_and_termination_take_effect_on_the_next_request(api):
    agreement = "district-early-learning-outcomes"
    assert _submit(api).status_code == 201
    release = api.get(
        "/v1/indicators/kindergarten-readiness/releases", as_="district-dashboard"
    ).json()[0]["id"]
    assert api.get(f"/v1/releases/{release}", as_="district-dashboard").status_code == 200

    r = api.post(
        f"/v1/agreements/{agreement}/suspend",
        as_="district-data-manager",
        json={"reason": "data quality review"},
    )
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    denied = _submit(api)
    assert denied.status_code == 403
    assert denied.json()["decision"]["failed_constraints"][0]["rule"] == "system:agreement-in-force"
    assert api.get(f"/v1/releases/{release}", as_="district-dashboard").status_code == 403

    assert api.post(f"/v1/agreements/{agreement}/resume", as_="backbone-manager").status_code == 200
    assert _submit(api).status_code == 201

    assert (
        api.post(
            f"/v1/agreements/{agreement}/terminate", as_="district-data-manager", json={}
        ).status_code
        == 200
    )
    assert _submit(api).status_code == 403
    assert (
        api.post(f"/v1/agreements/{agreement}/resume", as_="district-data-manager").status_code
        == 409
    )


def test_odrl_export(api):
    r = api.get("/v1/agreements/health-birth-outcomes/odrl", as_="health-data-manager")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/ld+json")
    doc = r.json()
    ctx = doc["@context"]
    assert ctx["odrl"] == "http://www.w3.org/ns/odrl/2/"
    assert (
        doc["type"] == "Agreement"
        and doc["uid"] == "urn:backbone:agreement:health-birth-outcomes:v1"
    )
    shipped = (resources.files("agreements") / "odrl_context.json").read_text()
    assert yaml.safe_load(shipped)["@context"] == ctx
    rules = doc["permission"] + doc["prohibition"] + doc["obligation"]
    for rule in rules:
        assert rule["action"] in ctx, rule["action"]
        for c in rule.get("constraint", []):
            assert c["leftOperand"] in ctx and c["operator"] in ctx
    for key in doc:
        assert key.startswith("@") or key in ctx or ":" in key, key
    assert {p["action"] for p in doc["prohibition"]} == {"export_records", "redisclose"}


def test_what_if_decisions_and_draft_impact(api):
    r = api.post(
        "/v1/policy/decide",
        as_="district-data-manager",
        json={
            "client_id": "district-sis",
            "action": "submit",
            "resource": {"datasets": ["kindergarten_readiness"], "fields": ["student_id", "ssn"]},
        },
    )
    assert r.status_code == 200
    assert r.json()["decision"]["effect"] == "deny"
    r = api.post(
        "/v1/policy/decide",
        as_="district-data-manager",
        json={"client_id": "health-vitals", "action": "submit"},
    )
    assert r.status_code == 403

    draft = yaml.safe_load((resources.files("demo") / "agreements" / "district.yaml").read_text())
    draft["rules"]["permission"][1]["constraint"][1]["rightOperand"] = ["district", "backbone"]
    r = api.post(
        "/v1/policy/decide",
        as_="backbone-manager",
        json={
            "action": "publish",
            "draft": draft,
            "resource": {
                "datasets": ["kindergarten_readiness"],
                "dimensions": ["school_year"],
                "method": "suppression",
            },
            "context": {"purpose": "dpv:PublicBenefit", "recipients": ["district"]},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"]["effect"] == "permit"
    broken = {b["indicator"] for b in body["breaks"]}
    assert broken == {
        "kindergarten-readiness",
        "chronic-absenteeism",
        "readiness-after-prek",
        "kindergarten-enrollment",
    }
    # Nothing changed for real.
    assert (
        api.get("/v1/agreements/district-early-learning-outcomes", as_="backbone-manager").json()[
            "versions"
        ][-1]["version"]
        == 1
    )


def test_odrl_export_carries_the_review_term(api):
    doc = api.get("/v1/agreements/health-birth-outcomes/odrl", as_="health-data-manager").json()
    assert doc["bb:publicationReview"] == {
        "bb:reviewer": ["urn:backbone:org:health"],
        "bb:windowDays": 10,
        "bb:onTimeout": "publish",
    }
    district = api.get(
        "/v1/agreements/district-early-learning-outcomes/odrl", as_="district-data-manager"
    ).json()
    assert "bb:publicationReview" not in district
