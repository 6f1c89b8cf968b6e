"""The dataset endpoints: what a partner sends, as a Frictionless Table Schema and a template,
read by who may submit or read the agreement, 404 for anyone else, every read audited."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest
import yaml
from sqlalchemy import func, select

from agreements.compile import compile_terms
from agreements.document import AgreementDocument
from audit.models import AuditEvent
from demo.seed import code_list_versions
from records import datasets
from records.models import Submission
from records.validate import Validator
from tests.records.test_submissions_api import URL, problem

DEMO = Path(__file__).resolve().parents[2] / "demo" / "agreements"
KR = "/v1/datasets/kindergarten_readiness"


def demo_datasets():
    for path in sorted(DEMO.glob("*.yaml")):
        document = AgreementDocument.model_validate(yaml.safe_load(path.read_text()))
        terms = compile_terms(document, version=1, status="active", codelists=code_list_versions())
        yield from terms.datasets


def events(session, action: str) -> int:
    return session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    )


def test_a_partner_system_sees_the_datasets_it_may_submit_to(api):
    r = api.get("/v1/datasets", as_="district-sis")
    assert r.status_code == 200, r.text
    names = [d["name"] for d in r.json()]
    assert names == ["attendance", "kindergarten_readiness"]
    doc = next(d for d in r.json() if d["name"] == "kindergarten_readiness")
    assert doc["access"] == "submitter"
    assert doc["agreement"]["id"] == "district-early-learning-outcomes"
    assert doc["periods_open"] == ["2021-22", "2022-23", "2023-24", "2024-25", "2025-26"]
    schema = doc["schema"]
    assert schema["primaryKey"] == ["student_id", "school_year"]
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["student_id"]["constraints"] == {"required": True, "pattern": "[A-Z]{2}[0-9]{8}"}
    assert fields["student_id"]["description"] == "Statewide student identifier"
    assert fields["assessment_score"]["type"] == "integer"
    assert fields["assessment_score"]["constraints"] == {
        "required": False,
        "minimum": 0,
        "maximum": 100,
    }
    assert "Ashland" in fields["neighborhood"]["constraints"]["enum"]
    ext = schema["x-backbone"]
    assert ext["period_field"] == "school_year"
    assert ext["identifiers"] == ["student_id"]
    assert ext["geography"] == {"neighborhood": "neighborhood"}


def test_data_managers_backbone_and_auditor_read_outsiders_get_404(api):
    for reader, access in (
        ("district-data-manager", "reader"),
        ("backbone-manager", "reader"),
        ("county-auditor", "reader"),
        ("district-sis", "submitter"),
    ):
        r = api.get(KR, as_=reader)
        assert r.status_code == 200, (reader, r.text)
        assert r.json()["access"] == access
    for outsider in ("health-vitals", "health-data-manager", "elnet-enrollment"):
        r = api.get(KR, as_=outsider)
        body = problem(r, 404, "not-found")
        unknown = api.get("/v1/datasets/no_such_dataset", as_=outsider)
        # The same answer as for a dataset that does not exist: no existence oracle.
        assert problem(unknown, 404, "not-found")["detail"] == body["detail"]
        assert api.get(f"{KR}/template", as_=outsider).status_code == 404
        names = [d["name"] for d in api.get("/v1/datasets", as_=outsider).json()]
        assert "kindergarten_readiness" not in names
    assert [d["name"] for d in api.get("/v1/datasets", as_="health-vitals").json()] == ["births"]
    # A dashboard holds neither scope.
    problem(api.get(KR, as_="backbone-dashboard"), 403, "insufficient-scope")


def test_every_read_is_audited_denials_included(api, session):
    before = {a: events(session, a) for a in ("dataset.list", "dataset.read")}
    api.get("/v1/datasets", as_="district-sis")
    api.get(KR, as_="district-sis")
    api.get(f"{KR}/template", as_="district-sis")
    api.get(KR, as_="health-vitals")
    api.get(KR, as_="backbone-dashboard")
    session.expire_all()
    assert events(session, "dataset.list") == before["dataset.list"] + 1
    assert events(session, "dataset.read") == before["dataset.read"] + 4
    denied = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "dataset.read")
        .order_by(AuditEvent.idx.desc())
    ).first()
    assert denied is not None and denied.outcome != "succeeded"


def test_the_template_is_accepted_unchanged(api, session):
    r = api.get(f"{KR}/template", as_="district-sis")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == [
        "student_id",
        "school_year",
        "neighborhood",
        "race_ethnicity",
        "ready",
        "assessment_score",
    ]
    assert len(rows) == 2 and rows[1][0] == "XX00000001" and rows[1][1] == "2021-22"
    s = api.post(
        URL + "?period=2021-22",
        as_="district-sis",
        content=r.content,
        headers={"Content-Type": "text/csv"},
    )
    assert s.status_code == 201, s.text
    assert s.json()["row_count"] == 1
    assert session.get(Submission, s.json()["id"]) is not None


def codes(dataset, row: dict[str, str | None]) -> dict[str, int]:
    """The validator's error counts for one record (every value as text, as in a CSV)."""
    period = datasets.open_periods(dataset)
    validator = Validator(dataset, period=period[0] if period else None)
    frame = pl.DataFrame({k: [v] for k, v in row.items()}, schema=dict.fromkeys(row, pl.String))
    validator.check(frame)
    return validator.report.counts


@pytest.mark.parametrize("dataset", list(demo_datasets()), ids=lambda d: d.name)
def test_the_schema_says_what_the_validator_checks(dataset):
    """Each constraint of the published schema is one the validator enforces, and each one it
    enforces is published: required, enum, minimum, maximum and pattern, field by field."""
    example = datasets.example_row(dataset)
    assert example is not None and codes(dataset, example) == {}
    fields = {f["name"]: f for f in datasets.describe_fields(dataset)}
    assert list(fields) == [f.name for f in dataset.fields]
    for spec in dataset.fields:
        c = fields[spec.name]["constraints"]
        assert fields[spec.name]["type"] == spec.type
        missing = codes(dataset, {**example, spec.name: None})
        assert c["required"] == ("required" in missing), spec.name
        unlisted = codes(dataset, {**example, spec.name: "zz-not-listed"})
        if "enum" in c:
            assert [str(v) for v in c["enum"]] == [str(v) for v in spec.enum or ()]
            for value in c["enum"]:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                assert "enum" not in codes(dataset, {**example, spec.name: text})
            if spec.type == "string":
                assert "enum" in unlisted
        else:
            assert "enum" not in unlisted
        if spec.type in ("integer", "number", "year"):
            low = codes(dataset, {**example, spec.name: str(int(c.get("minimum", 1000)) - 1)})
            high = codes(dataset, {**example, spec.name: str(int(c.get("maximum", 9999)) + 1)})
            assert ("minimum" in low) == ("minimum" in c), spec.name
            assert ("maximum" in high) == ("maximum" in c), spec.name
        if spec.type == "string" and "enum" not in c:
            assert ("pattern" in codes(dataset, {**example, spec.name: "!"})) == ("pattern" in c)


def test_the_openapi_document_says_either_scope_will_do(client):
    ops = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/datasets", "/v1/datasets/{dataset}", "/v1/datasets/{dataset}/template"):
        assert ops[path]["get"]["security"] == [
            {"oauth2": ["agreements:read"]},
            {"oauth2": ["records:write"]},
        ]
    template = ops["/v1/datasets/{dataset}/template"]["get"]["responses"]["200"]["content"]
    assert "text/csv" in template
