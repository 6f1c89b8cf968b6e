"""Shared code lists: defined once by the backbone, versioned, referred to by agreements with a
pinned version, checked by lint, and read everywhere an agreement's declared values are."""

from __future__ import annotations

import copy
import csv
import io
from importlib import resources
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy import func, select

from agreements.codelists import MAX_CODES, CodeListIn, parse_ref
from agreements.compile import compile_terms
from agreements.document import AgreementDocument, FieldConstraints
from agreements.odrl import to_odrl
from api.console.agreement_text import plain_language
from audit.models import AuditEvent
from demo.initiative import NEIGHBORHOODS, RACE_ETHNICITY, SCHOOL_YEARS
from demo.seed import code_list_versions
from tests.records.test_submissions_api import post, problem

DISTRICT = "district-early-learning-outcomes"
HEALTH = "health-birth-outcomes"
KR = "/v1/datasets/kindergarten_readiness"
WARDS: dict[str, Any] = {
    "id": "wards",
    "title": "City wards",
    "kind": "geography",
    "standard": "https://example.org/wards-2024",
    "codes": [{"code": "W1", "label": "Ward 1"}, {"code": "W2"}, {"code": "W3"}],
}


def _demo(name: str = "district.yaml") -> dict[str, Any]:
    return dict(yaml.safe_load((resources.files("demo") / "agreements" / name).read_text()))


def _yaml(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": yaml.safe_dump(document).encode(),
        "headers": {"Content-Type": "application/yaml"},
    }


def _events(session, action: str) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )
    )


# -- the model ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"codes": []}, "at least 1"),
        ({"codes": [{"code": "A"}, {"code": "B"}, {"code": "A"}]}, "code 3 repeats"),
        ({"codes": [{"code": " A"}]}, "spaces"),
        ({"codes": [{"code": ""}]}, "at least 1 character"),
        ({"codes": [{"code": str(i)} for i in range(MAX_CODES + 1)]}, "at most 10000"),
        ({"id": "Bad Slug"}, "should match pattern"),
        ({"id": "wards@1"}, "should match pattern"),
        ({"kind": "colour"}, "geography"),
        ({"extra": 1}, "Extra inputs"),
    ],
)
def test_a_code_list_is_checked(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        CodeListIn.model_validate({**WARDS, **change})
    assert fragment in str(info.value)


def test_the_content_hash_covers_every_term() -> None:
    base = CodeListIn.model_validate(WARDS)
    assert base.content_hash() == CodeListIn.model_validate(copy.deepcopy(WARDS)).content_hash()
    for change in ({"standard": "other"}, {"codes": WARDS["codes"][:2]}, {"title": "Wards"}):
        assert CodeListIn.model_validate({**WARDS, **change}).content_hash() != base.content_hash()


def test_a_reference_pins_a_version() -> None:
    assert parse_ref("neighborhoods@12") == ("neighborhoods", 12)
    for bad in ("neighborhoods", "neighborhoods@", "neighborhoods@0", "@1", "Neighborhoods@1"):
        with pytest.raises(ValueError):
            parse_ref(bad)
    with pytest.raises(ValidationError, match="names no version"):
        FieldConstraints.model_validate({"codelist": "neighborhoods"})
    with pytest.raises(ValidationError, match="either enum or codelist"):
        FieldConstraints.model_validate({"codelist": "neighborhoods@1", "enum": ["Ashland"]})


def test_compiled_terms_hold_the_codes_and_never_an_unresolved_reference() -> None:
    document = AgreementDocument.model_validate(_demo())
    terms = compile_terms(document, version=1, status="active", codelists=code_list_versions())
    ds = terms.dataset("kindergarten_readiness")
    assert ds is not None
    hood = ds.field("neighborhood")
    assert hood is not None and hood.enum == NEIGHBORHOODS
    assert hood.codelist == "neighborhoods@1"
    race = ds.field("race_ethnicity")
    assert race is not None and race.enum == RACE_ETHNICITY
    assert race.codelist_standard is not None and "SPD 15" in race.codelist_standard
    from agreements.codelists import UnresolvedCodeList

    with pytest.raises(UnresolvedCodeList):
        compile_terms(document, version=1, status="active")


# -- the API ------------------------------------------------------------------------------------


def test_the_backbone_defines_versions_anyone_authenticated_reads_them(api, session):
    r = api.post("/v1/codelists", as_="backbone-manager", json=WARDS)
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["id"], first["version"], first["ref"]) == ("wards", 1, "wards@1")
    assert first["codes"][0] == {"code": "W1", "label": "Ward 1"}
    assert first["content_hash"].startswith("sha256:") and first["code_count"] == 3
    # The same content again is a conflict; a change is the next version.
    again = api.post("/v1/codelists", as_="backbone-manager", json=WARDS)
    problem(again, 409, "code-list-conflict")
    changed = {**WARDS, "codes": [*WARDS["codes"], {"code": "W4"}]}
    r = api.post("/v1/codelists", as_="backbone-manager", json=changed)
    assert r.status_code == 201 and r.json()["version"] == 2
    reads_before = _events(session, "codelist.read")
    for reader in ("district-sis", "county-auditor", "health-dashboard", "backbone-admin"):
        latest = api.get("/v1/codelists/wards", as_=reader)
        assert latest.status_code == 200, (reader, latest.text)
        assert latest.json()["version"] == 2 and len(latest.json()["codes"]) == 4
        v1 = api.get("/v1/codelists/wards/versions/1", as_=reader).json()
        assert [c["code"] for c in v1["codes"]] == ["W1", "W2", "W3"]
    listed = {c["ref"] for c in api.get("/v1/codelists", as_="district-sis").json()}
    assert {"wards@2", "neighborhoods@1", "school-years@1", "race-ethnicity@1"} <= listed
    assert _events(session, "codelist.read") == reads_before + 9
    assert _events(session, "codelist.create") >= 2


def test_only_the_backbone_scope_defines_and_a_token_is_needed_to_read(api, client):
    for writer in ("district-data-manager", "district-sis", "county-auditor"):
        r = api.post("/v1/codelists", as_=writer, json=WARDS)
        problem(r, 403, "insufficient-scope")
    problem(client.get("/v1/codelists"), 401, "invalid-token")
    assert api.get("/v1/codelists/wards", as_="district-sis").status_code == 404


def test_unknown_ids_versions_and_bad_input_are_problems(api):
    problem(api.get("/v1/codelists/nowhere", as_="district-sis"), 404, "not-found")
    r = api.get("/v1/codelists/neighborhoods/versions/7", as_="district-sis")
    assert "no version 7" in problem(r, 404, "not-found")["detail"]
    problem(api.get("/v1/codelists/Bad%20Id", as_="district-sis"), 422, "validation-error")
    for bad in (
        {**WARDS, "codes": []},
        {**WARDS, "codes": [{"code": "W1"}, {"code": "W1"}]},
        {**WARDS, "codes": [{"code": f"c{i}"} for i in range(MAX_CODES + 1)]},
        {**WARDS, "id": "no spaces"},
        {k: v for k, v in WARDS.items() if k != "kind"},
    ):
        r = api.post("/v1/codelists", as_="backbone-manager", json=bad)
        problem(r, 422, "validation-error")
    assert api.get("/v1/codelists/wards", as_="district-sis").status_code == 404


# -- agreements and lint ------------------------------------------------------------------------


def _with_neighborhoods(ref: str) -> dict[str, Any]:
    doc = _demo()
    doc["uid"] = "codelist-pilot"
    doc["datasets"][0]["fields"][2]["constraints"]["codelist"] = ref
    return doc


def test_lint_checks_every_reference(api):
    def findings(doc: dict[str, Any]) -> list[dict[str, str]]:
        r = api.post("/v1/agreements/lint", as_="backbone-manager", **_yaml(doc))
        assert r.status_code == 200, r.text
        return [f for f in r.json()["findings"] if f["path"].endswith("codelist")]

    path = "datasets.0.fields.2.constraints.codelist"
    assert findings(_with_neighborhoods("neighborhoods@1")) == []
    [unknown] = findings(_with_neighborhoods("nowhere@1"))
    assert (unknown["code"], unknown["path"], unknown["severity"]) == (
        "unknown-code-list",
        path,
        "error",
    )
    [version] = findings(_with_neighborhoods("neighborhoods@3"))
    assert (version["code"], version["severity"]) == ("unknown-code-list-version", "error")
    doc = _with_neighborhoods("neighborhoods@1")
    doc["datasets"][0]["fields"][4]["constraints"] = {"codelist": "neighborhoods@1"}
    assert doc["datasets"][0]["fields"][4]["type"] == "boolean"
    assert [f["code"] for f in findings(doc)] == ["bad-code-list-field"]
    # A newer version is a warning that does not block.
    more = {
        "id": "neighborhoods",
        "title": "Riverton neighborhoods",
        "kind": "geography",
        "codes": [{"code": n} for n in (*NEIGHBORHOODS, "Harborview")],
    }
    assert api.post("/v1/codelists", as_="backbone-manager", json=more).status_code == 201
    newer = findings(_with_neighborhoods("neighborhoods@1"))
    assert {(f["code"], f["severity"]) for f in newer} == {("newer-code-list-version", "warning")}
    # Both datasets of the district's agreement refer to the neighborhoods.
    assert {f["path"] for f in newer} == {path, "datasets.1.fields.2.constraints.codelist"}
    r = api.post(
        "/v1/agreements", as_="backbone-manager", **_yaml(_with_neighborhoods("neighborhoods@1"))
    )
    assert r.status_code == 201, r.text


def test_a_draft_whose_reference_does_not_resolve_is_refused(api):
    for ref, code in (
        ("nowhere@1", "unknown-code-list"),
        ("neighborhoods@2", "unknown-code-list-version"),
    ):
        r = api.post("/v1/agreements", as_="backbone-manager", **_yaml(_with_neighborhoods(ref)))
        body = problem(r, 422, "invalid-agreement")
        assert [(f["code"], f["path"]) for f in body["findings"]] == [
            (code, "datasets.0.fields.2.constraints.codelist")
        ]
    r = api.post(
        "/v1/agreements", as_="backbone-manager", **_yaml(_with_neighborhoods("neighborhoods"))
    )
    body = problem(r, 422, "invalid-agreement")
    assert any("names no version" in f["message"] for f in body["findings"])
    assert api.get("/v1/agreements/codelist-pilot", as_="backbone-manager").status_code == 404
    # The what-if decision resolves a draft's references the same way.
    r = api.post(
        "/v1/policy/decide",
        as_="backbone-manager",
        json={
            "action": "publish",
            "resource": {"datasets": ["kindergarten_readiness"]},
            "draft": _with_neighborhoods("nowhere@1"),
        },
    )
    assert problem(r, 422, "invalid-agreement")["findings"][0]["code"] == "unknown-code-list"


# -- what reads declared values -----------------------------------------------------------------


def test_a_value_outside_the_code_list_is_refused_like_an_enum(api):
    header = "student_id,school_year,neighborhood,grade,days_enrolled,days_absent\n"
    body = (
        header
        + "QC00000001,2025-26,Ashland,K,170,3\n"
        + "QC00000002,2025-26,Atlantis,K,170,3\n"  # not in neighborhoods@1
        + "QC00000003,2025-26,Ashland,Z,170,3\n"  # not in the grade enum
        + "QC00000004,2020-21,Ashland,K,170,3\n"  # not in school-years@1
    ).encode()
    r = post(api, body, url="/v1/datasets/attendance/submissions")
    report = problem(r, 422, "submission-rejected")["report"]
    assert report["counts"] == {"enum": 3}
    errors = {e["field"]: e for e in report["errors"]}
    assert (errors["neighborhood"]["row"], errors["grade"]["row"]) == (2, 3)
    assert errors["school_year"]["row"] == 4
    # Word for word the enum's report, and the value itself is never echoed.
    for field in ("neighborhood", "school_year"):
        assert {k: v for k, v in errors[field].items() if k not in ("row", "field")} == {
            k: v for k, v in errors["grade"].items() if k not in ("row", "field")
        }
    assert "Atlantis" not in r.text
    ok = (header + "QC00000005,2025-26,Willow Creek,K,170,3\n").encode()
    assert post(api, ok, url="/v1/datasets/attendance/submissions").status_code == 201


def test_the_dataset_schema_and_template_show_the_codes(api):
    doc = api.get(KR, as_="district-sis").json()
    fields = {f["name"]: f for f in doc["schema"]["fields"]}
    assert fields["neighborhood"]["constraints"]["enum"] == list(NEIGHBORHOODS)
    assert fields["neighborhood"]["x-backbone-codelist"] == {"ref": "neighborhoods@1"}
    assert fields["school_year"]["constraints"]["enum"] == list(SCHOOL_YEARS)
    race = fields["race_ethnicity"]
    assert race["constraints"]["enum"] == list(RACE_ETHNICITY)
    assert race["x-backbone-codelist"]["ref"] == "race-ethnicity@1"
    assert "SPD 15" in race["x-backbone-codelist"]["standard"]
    assert "x-backbone-codelist" not in fields["student_id"]
    assert doc["periods_open"] == list(SCHOOL_YEARS)
    rows = list(csv.reader(io.StringIO(api.get(f"{KR}/template", as_="district-sis").text)))
    example = dict(zip(rows[0], rows[1], strict=True))
    assert example["neighborhood"] in NEIGHBORHOODS
    assert example["race_ethnicity"] in RACE_ETHNICITY


def test_the_suppression_grid_has_every_code_of_the_list(api):
    # The demo's releases by neighborhood were computed when it was seeded: every one of the 40
    # neighborhoods is a cell (published or suppressed), though the data need not cover them all.
    releases = api.get(
        "/v1/indicators/kindergarten-readiness/releases", as_="backbone-manager"
    ).json()
    by_neighborhood = [r for r in releases if "neighborhood" in r["dimensions"]]
    assert by_neighborhood, releases
    release = api.get(f"/v1/releases/{by_neighborhood[0]['id']}", as_="backbone-manager").json()
    names = [h["name"] for h in release["headers"]]
    cells = [dict(zip(names, row, strict=True)) for row in release["rows"]]
    assert {c["neighborhood"] for c in cells} - {"_T"} == set(NEIGHBORHOODS)


def test_the_odrl_export_and_the_plain_language_name_the_codes(api):
    body = api.get(f"/v1/agreements/{HEALTH}/odrl", as_="health-data-manager").json()
    lists = {c["bb:ref"]: c for c in body["bb:codeLists"]}
    assert set(lists) == {"neighborhoods@1", "race-ethnicity@1"}
    assert lists["neighborhoods@1"]["bb:codes"] == list(NEIGHBORHOODS)
    assert lists["race-ethnicity@1"]["bb:fields"] == ["bb:dataset:births#race_ethnicity"] or all(
        f.endswith("#race_ethnicity") for f in lists["race-ethnicity@1"]["bb:fields"]
    )
    assert "SPD 15" in lists["race-ethnicity@1"]["bb:standard"]
    document = AgreementDocument.model_validate(_demo("health.yaml"))
    plain = to_odrl(
        document, version=1, status="active", content_hash="x", codelists=code_list_versions()
    )
    assert plain["bb:codeLists"] == body["bb:codeLists"]
    data = next(s for s in plain_language(document, code_list_versions()) if "Datasets" in s.title)
    text = " ".join(data.items)
    assert (
        "neighborhood takes one of the 40 values of the shared code list Riverton neighborhoods"
        " (neighborhoods, version 1)" in text
    )
    assert "Woodlawn" in text and "following OMB SPD 15" in text
