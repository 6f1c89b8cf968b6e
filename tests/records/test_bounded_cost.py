"""Parsers and validators of a submission are linear in their input, and a header that cannot
succeed is refused as soon as it is read."""

from __future__ import annotations

import io
import time

import pytest

from policy.model import DatasetTerms, FieldTerms
from records import intake
from records.errors import MalformedBody, TooManyColumns
from records.validate import Validator

LIMITS = intake.IntakeLimits(max_bytes=1 << 26, max_ratio=20, max_line_bytes=4 << 20)
F = FieldTerms
DATASET = DatasetTerms(
    name="t",
    provider="p",
    submitters=frozenset({"p"}),
    fields=(
        F("pid", "string", "identifier", required=True),
        F("year", "string", "dimension", required=True),
        F("n", "integer", "measure"),
    ),
    key=("pid", "year"),
)


def header_of(body: bytes, max_columns: int | None = None) -> list[str]:
    stream = intake.decoded(io.BytesIO(body), "csv", "identity", LIMITS)
    reader = intake.open_reader("csv", stream, LIMITS, max_columns=max_columns)
    assert isinstance(reader, intake.CsvReader)
    return reader.header()


def test_a_wide_header_is_checked_in_linear_time():
    # 60,000 distinct names: the quadratic duplicate check took about a minute for this; a
    # linear one takes milliseconds. The bound is two orders of magnitude above the latter.
    names = [f"c{i}" for i in range(60_000)]
    started = time.perf_counter()
    assert header_of(",".join(names).encode() + b"\n1\n") == names
    assert time.perf_counter() - started < 5
    with pytest.raises(MalformedBody, match="repeats a column name"):
        header_of(",".join([*names, "c7"]).encode() + b"\n")


def test_a_header_wider_than_the_dataset_is_refused_before_its_names_are_examined():
    with pytest.raises(TooManyColumns, match="4 columns; the dataset has only 3"):
        header_of(b"pid,year,n,extra\n", max_columns=3)
    # ... even when the names would repeat: the width alone decides.
    with pytest.raises(TooManyColumns):
        header_of(b",".join([b"a"] * 10) + b"\n", max_columns=3)
    assert header_of(b"pid,year,n\n", max_columns=3) == ["pid", "year", "n"]


def test_an_unlisted_column_is_named_when_the_row_is_a_header():
    val = Validator(DATASET)
    assert not val.check_header(["pid", "year", "free_lunch"])
    errors = val.report.as_dict()["errors"]
    assert {"field": "free_lunch", "code": "unknown-field"}.items() <= errors[0].items()


@pytest.mark.parametrize(
    "value", ["Jane Doe", "AB12345678", "2019-03-04", "555-1234", "x" * 65, "Élodie"]
)
def test_a_value_like_column_name_is_never_echoed(value):
    val = Validator(DATASET)
    assert not val.check_header(["pid", "year", value])
    report = str(val.report.as_dict())
    assert value not in report
    assert "column 3" in report


def test_a_headerless_file_is_reported_by_position_with_a_hint():
    val = Validator(DATASET)
    assert not val.check_header(["Smith", "2025-26", "7"])
    report = val.report.as_dict()
    assert "Smith" not in str(report)
    assert val.hint is not None and "header row missing" in val.hint


def test_a_semicolon_delimited_header_gets_a_hint():
    val = Validator(DATASET)
    assert not val.check_header(["pid;year;n"])
    assert val.hint is not None and "';'" in val.hint


def test_over_http_a_too_wide_header_is_a_422_and_a_semicolon_header_gets_the_hint(api):
    url = "/v1/datasets/kindergarten_readiness/submissions"
    wide = ",".join(f"c{i}" for i in range(20_000)).encode() + b"\n"
    r = api.post(url, as_="district-sis", content=wide, headers={"Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "/problems/too-many-columns"
    # A ';' header naming the dataset's fields is read with ';' (here: fields are missing).
    body = b"student_id;school_year;neighborhood\nQA00000001;2025-26;Ashland\n"
    r = api.post(url, as_="district-sis", content=body, headers={"Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    assert r.json()["report"]["counts"] == {"missing-field": 2}  # race_ethnicity, ready
    # One naming none of them is one unlisted column, with the hint.
    body = b"pupil;year;area\nQA00000001;2025-26;Ashland\n"
    r = api.post(url, as_="district-sis", content=body, headers={"Content-Type": "text/csv"})
    assert r.status_code == 403, r.text
    assert "';'" in r.json()["detail"]
    assert "QA00000001" not in r.text
    # An unlisted column of a real header is named; a headerless file's "names" never are.
    body = b"student_id,school_year,home_address\nQA00000001,2025-26,1 Main St\n"
    r = api.post(url, as_="district-sis", content=body, headers={"Content-Type": "text/csv"})
    assert r.status_code == 403, r.text
    assert "Unlisted column(s): home_address." in r.json()["detail"]
    body = b"QA00000001,2025-26,Ashland\n"
    r = api.post(url, as_="district-sis", content=body, headers={"Content-Type": "text/csv"})
    assert r.status_code == 403, r.text
    assert "QA00000001" not in r.text and "Ashland" not in r.text
    assert "header row missing" in r.json()["detail"]
