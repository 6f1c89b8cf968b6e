"""Vectorized validation: every rule, the error report, and the fast path agreeing with the exact one."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.model import DatasetTerms, FieldTerms
from records import validate as v
from records.validate import Validator

F = FieldTerms
DATASET = DatasetTerms(
    name="t",
    provider="p",
    submitters=frozenset({"p"}),
    fields=(
        F("pid", "string", "identifier", required=True, pattern="[A-Z]{2}[0-9]{3}"),
        F("year", "string", "dimension", required=True, enum=("2024-25", "2025-26")),
        F("n", "integer", "measure", minimum=0, maximum=100),
        F("x", "number", "measure", minimum=-1.5, maximum=1.5),
        F("ok", "boolean", "measure"),
        F("born", "date", "attribute"),
        F("cohort", "year", "attribute"),
        F("note", "string", "attribute", min_length=2, max_length=5),
    ),
    key=("pid", "year"),
    period_field="year",
)


def run(rows: list[dict[str, object]], *, period=None, dataset=DATASET, chunks=1):
    frame = pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}) if rows else pl.DataFrame()
    val = Validator(dataset, period=period)
    out = []
    size = max(1, -(-frame.height // chunks))
    for i in range(0, frame.height, size):
        typed = val.check(frame.slice(i, size))
        if typed is not None and val.ok:
            val.remember_keys(typed)
            out.append(typed)
    val.finish(lambda columns: (f.select(columns) for f in out))
    return (pl.concat(out) if out and val.ok else None), val.report.as_dict()


GOOD = {"pid": "AB123", "year": "2025-26", "n": "7", "x": "0.5", "ok": "yes", "born": "2019-03-04",
        "cohort": "2019", "note": "hi"}  # fmt: skip


def test_a_good_record_is_typed():
    typed, report = run([GOOD, {**GOOD, "pid": "AB124", "n": "", "ok": "FALSE", "note": ""}])
    assert report["error_count"] == 0
    assert typed is not None
    assert typed.schema == {
        "pid": pl.String, "year": pl.String, "n": pl.Int64, "x": pl.Float64, "ok": pl.Boolean,
        "born": pl.Date, "cohort": pl.Int32, "note": pl.String,
    }  # fmt: skip
    assert typed.row(1, named=True)["n"] is None
    assert typed.row(1, named=True)["ok"] is False
    assert typed.row(1, named=True)["note"] is None  # blank optional text is missing


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"pid": ""}, "pid", "required"),
        ({"pid": "   "}, "pid", "required"),
        ({"pid": "ab123"}, "pid", "pattern"),
        ({"pid": "AB1234"}, "pid", "pattern"),
        ({"year": "2030-31"}, "year", "enum"),
        ({"n": "7.5"}, "n", "type"),
        ({"n": "seven"}, "n", "type"),
        ({"n": "-1"}, "n", "minimum"),
        ({"n": "101"}, "n", "maximum"),
        ({"x": "NaN"}, "x", "type"),
        ({"x": "inf"}, "x", "type"),
        ({"x": "1.6"}, "x", "maximum"),
        ({"ok": "maybe"}, "ok", "type"),
        ({"born": "2019-02-30"}, "born", "type"),
        ({"born": "04/03/2019"}, "born", "type"),
        ({"cohort": "19"}, "cohort", "type"),
        ({"note": "x"}, "note", "min-length"),
        ({"note": "toolong"}, "note", "max-length"),
    ],
)
def test_each_rule(change, field, code):
    typed, report = run([{**GOOD, "pid": "AB001"}, {**GOOD, **change}])
    assert typed is None
    assert report["counts"] == {code: 1}
    assert report["errors"] == [
        {"row": 2, "field": field, "code": code, "message": v.MESSAGES[code].format(type=
         next(f.type for f in DATASET.fields if f.name == field))}
    ]  # fmt: skip


def test_surrounding_whitespace_is_tolerated_exactly_as_before_conversion():
    typed, report = run([{**GOOD, "n": " 42 ", "ok": " True", "born": "2019-03-04 ", "x": "\t1"}])
    assert report["error_count"] == 0
    row = typed.row(0, named=True)
    assert (row["n"], row["ok"], row["x"]) == (42, True, 1.0)


def test_whitespace_only_optional_value_is_missing_not_an_error():
    typed, report = run([{**GOOD, "n": "  ", "note": "   "}])
    assert report["error_count"] == 0
    assert typed.row(0, named=True)["n"] is None and typed.row(0, named=True)["note"] is None


def test_duplicate_keys_across_parts_report_every_later_record():
    rows = [{**GOOD, "pid": f"AB{i:03d}"} for i in range(10)] + [{**GOOD, "pid": "AB003"}] * 2
    typed, report = run(rows, chunks=4)
    assert typed is None
    assert report["counts"] == {"duplicate-key": 2}
    assert [e["row"] for e in report["errors"]] == [11, 12]


def test_period_must_match_the_declared_period():
    _, report = run([GOOD, {**GOOD, "pid": "AB999", "year": "2024-25"}], period="2025-26")
    assert report["counts"] == {"period": 1}
    assert report["errors"][0]["row"] == 2


def test_report_keeps_the_first_errors_by_row_and_counts_all(monkeypatch):
    rows = [
        {
            **GOOD,
            "pid": f"AB{i:03d}",
            "n": "bad" if i % 2 else "1",
            "ok": "?" if i % 3 == 0 else "y",
        }
        for i in range(300)
    ]
    _, report = run(rows, chunks=7)
    assert report["counts"] == {"type": 150 + 100}
    assert report["error_count"] == 250
    assert report["truncated"] is True
    listed = [(e["row"], e["field"]) for e in report["errors"]]
    assert len(listed) == v.MAX_REPORTED
    assert listed == sorted(listed)
    assert listed[0] == (1, "ok") and listed[1] == (2, "n")


def test_messages_never_contain_values():
    secret = "ZQ998877-SECRET"
    rows = [{**GOOD, "pid": secret, "n": secret, "note": secret, "year": secret}]
    _, report = run(rows)
    assert secret not in str(report) and "SECRET" not in str(report)


def test_unknown_and_missing_header_fields():
    val = Validator(DATASET)
    assert not val.check_header(["pid", "Jane Doe", "n"])
    report = val.report.as_dict()
    assert report["counts"] == {"missing-field": 1, "unknown-field": 1}
    assert {"row": None, "field": "column 2", "code": "unknown-field"}.items() <= report["errors"][
        0
    ].items() or any(e["field"] == "column 2" for e in report["errors"])
    assert "Jane Doe" not in str(report)


def test_json_records_without_a_required_key_fail_per_row():
    val = Validator(DATASET)
    frame = pl.DataFrame({"pid": ["AB001", "AB002"], "n": [1, 2]})
    assert val.check(frame) is None
    assert val.report.counts == {"required": 2}


def test_json_types_are_converted():
    val = Validator(DATASET)
    frame = pl.DataFrame(
        {
            "pid": ["AB001"],
            "year": ["2025-26"],
            "n": [3.0],
            "x": [1],
            "ok": [True],
            "cohort": [2019],
        }
    )
    typed = val.check(frame)
    assert typed is not None
    assert typed.row(0, named=True) | {} == {
        "pid": "AB001", "year": "2025-26", "n": 3, "x": 1.0, "ok": True, "born": None,
        "cohort": 2019, "note": None,
    }  # fmt: skip
    val2 = Validator(DATASET)
    assert val2.check(frame.with_columns(pl.lit(3.5).alias("n"))) is None
    assert val2.report.counts == {"type": 1}


def test_pattern_the_rust_engine_cannot_run_is_checked_in_python():
    ds = DatasetTerms("t", "p", frozenset(), (F("a", "string", "attribute", pattern=r"(\w)\1"),))
    val = Validator(ds)
    assert val.check(pl.DataFrame({"a": ["aa", "bb"]})) is not None
    assert val.check(pl.DataFrame({"a": ["ab"]})) is None
    assert val.report.counts == {"pattern": 1}


cell = st.one_of(
    st.sampled_from(["", " ", "  7", "7 ", "x", "true", "TRUE", " yes", "no", "2019-01-02", " 2019-01-02",
                     "2019", "1.5", " 0.5 ", "-1", "AB123", "2025-26", " 2025-26", "hi", "\t"]),
    st.text(max_size=4),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.fixed_dictionaries({f.name: cell for f in DATASET.fields}), min_size=1, max_size=8)
)
def test_fast_path_never_disagrees_with_the_exact_path(rows):
    frame = pl.DataFrame(rows, schema={f.name: pl.String for f in DATASET.fields})
    val = Validator(DATASET)
    exact_plan = val._plan(frame.schema, True)
    work = frame.with_columns(exact_plan.typed)
    exact_flags = work.select(exact_plan.checks)
    exact_ok = not any(exact_flags.sum().row(0))
    typed = val.check(frame)
    assert (typed is not None) == exact_ok
    if typed is not None:
        assert typed.equals(work.select(exact_plan.output))
