"""The agreement terms of issue 11 kept end to end: derived fields and structural zeros are
linted, and a record in a combination the agreement declares impossible is refused."""

from __future__ import annotations

import pytest

from agreements.document import AgreementDocument
from agreements.lint import lint
from records.errors import SubmissionRejected
from tests.records.helpers import agreement_document, make_agreement

FIELDS = [
    {
        "name": "person_id",
        "type": "string",
        "role": "identifier",
        "constraints": {"required": True},
    },
    {"name": "grade", "type": "string", "role": "dimension", "constraints": {"enum": ["PK", "K"]}},
    {
        "name": "school_year",
        "type": "string",
        "role": "dimension",
        "constraints": {"enum": ["2021-22", "2022-23"]},
    },
    {"name": "score", "type": "integer", "role": "measure"},
]


def document(uid: str, **dataset) -> dict:
    doc = agreement_document(uid, FIELDS, dataset="grades", key=["person_id"])
    doc["datasets"][0].update(dataset)
    return doc


def codes(doc: dict) -> set[str]:
    return {f.code for f in lint(AgreementDocument.model_validate(doc))}


def test_lint_checks_derived_fields_and_structural_zeros():
    ok = document(
        "sz-ok",
        derived=[
            {
                "name": "band",
                "categories": [{"value": "high", "when": "score >= 80"}],
                "otherwise": "low",
            }
        ],
        structural_zeros=[{"grade": "PK", "school_year": "2021-22"}, {"band": "high"}],
    )
    assert not codes(ok) & {"bad-expression", "dead-clause", "unknown-category"}
    assert "bad-expression" in codes(document("sz-1", derived=[{"name": "f", "when": "score >>"}]))
    assert "dead-clause" in codes(document("sz-2", structural_zeros=[{"score": 3}]))
    assert "unknown-category" in codes(document("sz-3", structural_zeros=[{"grade": "G9"}]))
    with pytest.raises(ValueError):
        AgreementDocument.model_validate(
            document("sz-4", derived=[{"name": "f", "when": "score > 1", "otherwise": "x"}])
        )


def test_a_record_in_a_structural_zero_is_refused(session, submit_file):
    make_agreement(
        session,
        document("sz-ingest", structural_zeros=[{"grade": "PK", "school_year": "2021-22"}]),
    )
    ok = b"person_id,grade,school_year,score\nP1,PK,2022-23,50\nP2,K,2021-22,70\n"
    assert submit_file(ok, dataset="grades").row_count == 2
    bad = b"person_id,grade,school_year,score\nP3,K,2022-23,50\nP4,PK,2021-22,70\n"
    with pytest.raises(SubmissionRejected) as refused:
        submit_file(bad, dataset="grades")
    report = refused.value.extra["report"]
    assert "structural-zero" in str(report)
    assert "P4" not in str(report)  # never a value of the record


def test_derived_flags_and_bands_give_each_record_its_category():
    """A derived field's categories are computed from the record: the first category whose
    ``when`` holds, else ``otherwise`` (a record whose measure is missing included; a flag is
    then false), as the README's agreement format says."""
    import polars as pl

    from agreements.categories import dataset_attributes, label
    from agreements.compile import compile_terms

    doc = document(
        "sz-derived",
        derived=[
            {"name": "passed", "when": "score >= 50"},
            {
                "name": "band",
                "categories": [
                    {"value": "high", "when": "score >= 80"},
                    {"value": "middle", "when": "score >= 50"},
                ],
                "otherwise": "low",
            },
        ],
    )
    terms = compile_terms(AgreementDocument.model_validate(doc), version=1, status="active")
    ds = terms.datasets[0]
    assert dataset_attributes(ds)["band"].categories == ("high", "middle", "low")
    frame = pl.DataFrame({"score": [95, 80, 79, 50, 49, 0, None]}, schema={"score": pl.Int64})
    bands = frame.select(label(ds, "band")).to_series().to_list()
    assert bands == ["high", "high", "middle", "middle", "low", "low", "low"]
    passed = frame.select(label(ds, "passed")).to_series().to_list()
    assert passed == ["true", "true", "true", "true", "false", "false", "false"]
