"""Error messages that help, and never echo a record value or identifier."""

from __future__ import annotations

import polars as pl

from policy.model import DatasetTerms, FieldTerms
from records.validate import Validator

URL = "/v1/datasets/kindergarten_readiness/submissions"
HEADER = "student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"


def test_duplicate_keys_are_reported_in_the_same_pass_as_other_errors(api):
    body = (
        HEADER
        + "QD00000001,2025-26,Ashland,Asian,true,10\n"
        + "QD00000002,2025-26,Ashland,Asian,maybe,10\n"  # a type error
        + "QD00000001,2025-26,Ashland,Asian,false,11\n"  # a duplicate of row 1
    ).encode()
    r = api.post(URL, as_="district-sis", content=body, headers={"Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    report = r.json()["report"]
    assert report["counts"] == {"duplicate-key": 1, "type": 1}
    assert {"row": 3, "code": "duplicate-key"}.items() <= next(
        e for e in report["errors"] if e["code"] == "duplicate-key"
    ).items()
    assert "QD0000000" not in r.text


def test_typed_duplicates_across_parts_and_missing_keys():
    dataset = DatasetTerms(
        name="t",
        provider="p",
        submitters=frozenset({"p"}),
        fields=(FieldTerms("pid", "string", "identifier"), FieldTerms("n", "integer", "measure")),
        key=("pid",),
    )
    val = Validator(dataset)
    assert val.check(pl.DataFrame({"pid": ["a", "b"], "n": ["1", "x"]})) is None
    val.check(pl.DataFrame({"pid": ["a", None, None], "n": ["1", "2", "3"]}))
    val.finish(lambda columns: iter(()))
    report = val.report.as_dict()
    assert report["counts"]["duplicate-key"] == 1  # row 3; two missing keys are not duplicates
    assert [e["row"] for e in report["errors"] if e["code"] == "duplicate-key"] == [3]


def test_an_unknown_dataset_is_named_with_those_the_client_may_submit(api):
    r = api.post(
        "/v1/datasets/shoe_sizes/submissions",
        as_="district-sis",
        content=b"a\n1\n",
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert "Unknown dataset 'shoe_sizes'" in detail
    assert "kindergarten_readiness" in detail


def test_a_suspended_agreement_is_named_with_its_status_and_reason(api):
    r = api.post(
        "/v1/agreements/district-early-learning-outcomes/suspend",
        as_="district-data-manager",
        json={"reason": "data quality review"},
    )
    assert r.status_code == 200, r.text
    r = api.post(URL, as_="district-sis", content=b"a\n1\n", headers={"Content-Type": "text/csv"})
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert "district-early-learning-outcomes v1 is suspended" in detail
    assert "data quality review" in detail


def test_an_unknown_release_dimension_is_named_with_the_valid_ones(api):
    r = api.post(
        "/v1/indicators/kindergarten-readiness/releases",
        as_="backbone-manager",
        json={"dimensions": ["shoe_size"]},
    )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "'shoe_size'" in detail and "neighborhood" in detail
