"""Vectorized validation of a submission against its dataset's fields in the governing agreement.

Every check is a polars expression over whole columns; nothing loops over rows in Python. The
result is either a typed frame or an error report of (row, field, code, message) for the first
errors plus counts per code. Rows are numbered from 1 for the first record (for CSV, the line
after the header). Messages never contain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from policy.model import DatasetTerms, FieldTerms

MAX_REPORTED = 100
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_NUMERIC = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_FLOATS = (pl.Float32, pl.Float64)

MESSAGES = {
    "unknown-field": "This field is not listed for the dataset in the governing agreement.",
    "missing-field": "A required field of the dataset is missing from the submission.",
    "required": "A value is required.",
    "type": "The value is not of the field's type ({type}).",
    "enum": "The value is not one of the field's allowed values.",
    "minimum": "The value is below the field's minimum.",
    "maximum": "The value is above the field's maximum.",
    "pattern": "The value does not match the field's pattern.",
    "min-length": "The value is shorter than the field's minimum length.",
    "max-length": "The value is longer than the field's maximum length.",
    "duplicate-key": "Another record in this submission has the same key.",
}


@dataclass
class ValidationReport:
    errors: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(
        self, code: str, field_name: str | None, rows: pl.Series | None, ftype: str = ""
    ) -> None:
        n = 1 if rows is None else rows.len()
        if n == 0:
            return
        self.counts[code] = self.counts.get(code, 0) + n
        room = MAX_REPORTED - len(self.errors)
        message = MESSAGES[code].format(type=ftype)
        if rows is None:
            if room > 0:
                self.errors.append(
                    {"row": None, "field": field_name, "code": code, "message": message}
                )
            return
        for row in rows.head(max(room, 0)).to_list():
            self.errors.append(
                {"row": int(row), "field": field_name, "code": code, "message": message}
            )

    def as_dict(self) -> dict[str, Any]:
        errors = sorted(
            self.errors, key=lambda e: (e["row"] is not None, e["row"] or 0, e["field"] or "")
        )
        return {
            "error_count": self.total,
            "counts": dict(sorted(self.counts.items())),
            "errors": errors[:MAX_REPORTED],
            "truncated": self.total > MAX_REPORTED,
        }


def _blank(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.String:
        return col.is_null() | (col.str.strip_chars() == "")
    return col.is_null()


def _typed(col: pl.Expr, dtype: pl.DataType, ftype: str) -> pl.Expr:
    """An expression converting ``col`` to the field type; null where conversion fails."""
    is_str = dtype == pl.String
    s = col.str.strip_chars() if is_str else col
    if ftype == "string":
        return col if is_str else pl.lit(None, dtype=pl.String)
    if ftype == "integer":
        if is_str:
            return s.cast(pl.Int64, strict=False)
        if dtype in _NUMERIC:
            return col.cast(pl.Int64, strict=False)
        if dtype in _FLOATS:
            return (
                pl.when(col == col.floor()).then(col.cast(pl.Int64, strict=False)).otherwise(None)
            )
        return pl.lit(None, dtype=pl.Int64)
    if ftype == "number":
        if is_str:
            return s.cast(pl.Float64, strict=False)
        if dtype in _NUMERIC or dtype in _FLOATS:
            return col.cast(pl.Float64)
        return pl.lit(None, dtype=pl.Float64)
    if ftype == "boolean":
        if dtype == pl.Boolean:
            return col
        if is_str:
            low = s.str.to_lowercase()
            return (
                pl.when(low.is_in(_TRUE))
                .then(True)
                .when(low.is_in(_FALSE))
                .then(False)
                .otherwise(None)
            )
        return pl.lit(None, dtype=pl.Boolean)
    if ftype == "date":
        if is_str:
            return s.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
        return pl.lit(None, dtype=pl.Date)
    if ftype == "year":
        raw = (
            s.cast(pl.Int32, strict=False)
            if is_str
            else (
                col.cast(pl.Int32, strict=False)
                if dtype in _NUMERIC
                else pl.lit(None, dtype=pl.Int32)
            )
        )
        return pl.when(raw.is_between(1000, 9999)).then(raw).otherwise(None)
    raise ValueError(f"unknown field type {ftype}")


def _checks(
    spec: FieldTerms, typed: pl.Expr, raw: pl.Expr, raw_dtype: pl.DataType
) -> list[tuple[str, pl.Expr]]:
    present = ~_blank(raw, raw_dtype)
    checks: list[tuple[str, pl.Expr]] = []
    if spec.required:
        checks.append(("required", ~present))
    checks.append(("type", present & typed.is_null()))
    ok = present & typed.is_not_null()
    if spec.enum is not None:
        allowed = [str(v) for v in spec.enum] if spec.type == "string" else list(spec.enum)
        checks.append(("enum", ok & ~typed.is_in(allowed)))
    if spec.minimum is not None and spec.type in ("integer", "number", "year"):
        checks.append(("minimum", ok & (typed < spec.minimum)))
    if spec.maximum is not None and spec.type in ("integer", "number", "year"):
        checks.append(("maximum", ok & (typed > spec.maximum)))
    if spec.type == "string":
        if spec.pattern is not None:
            # Frictionless patterns match the whole value.
            checks.append(("pattern", ok & ~typed.str.contains(f"^(?:{spec.pattern})$")))
        if spec.min_length is not None:
            checks.append(("min-length", ok & (typed.str.len_chars() < spec.min_length)))
        if spec.max_length is not None:
            checks.append(("max-length", ok & (typed.str.len_chars() > spec.max_length)))
    return checks


def validate(
    frame: pl.DataFrame, dataset: DatasetTerms
) -> tuple[pl.DataFrame | None, ValidationReport]:
    """Check ``frame`` against ``dataset``; return the typed frame (or None) and the report."""
    report = ValidationReport()
    known = {f.name: f for f in dataset.fields}
    for position, name in enumerate(frame.columns, start=1):
        if name not in known:
            # Named by position only: in a file without a header row the "names" are values.
            report.add("unknown-field", f"column {position}", None)
    for spec in dataset.fields:
        if spec.name not in frame.columns and spec.required:
            report.add("missing-field", spec.name, None)
    if report.total:
        return None, report

    fields = [known[name] for name in frame.columns]
    indexed = frame.with_row_index("__row", offset=1)
    typed_exprs: list[pl.Expr] = []
    check_exprs: list[pl.Expr] = []
    labels: list[tuple[str, str, str]] = []
    for spec in fields:
        dtype = frame.schema[spec.name]
        raw = pl.col(spec.name)
        typed = _typed(raw, dtype, spec.type)
        typed_exprs.append(typed.alias(spec.name))
        for code, expr in _checks(spec, typed, raw, dtype):
            label = f"__chk{len(labels)}"
            labels.append((label, spec.name, code))
            check_exprs.append(expr.fill_null(False).alias(label))
    flags = indexed.select(pl.col("__row"), *check_exprs)
    if labels:
        any_bad = flags.select(pl.any_horizontal([pl.col(lbl) for lbl, _, _ in labels])).to_series()
        if any_bad.any():
            for label, name, code in labels:
                rows = flags.filter(pl.col(label)).get_column("__row")
                report.add(code, name, rows, known[name].type)
    # Columns of the dataset absent from the body are optional (checked above): add them as nulls.
    typed_frame = frame.select(typed_exprs)
    missing = [f for f in dataset.fields if f.name not in frame.columns]
    if missing:
        typed_frame = typed_frame.with_columns(
            pl.lit(None, dtype=_POLARS_TYPES[f.type]).alias(f.name) for f in missing
        )
    if dataset.key and not report.total:
        dup = typed_frame.with_row_index("__row", offset=1).filter(
            pl.struct(list(dataset.key)).is_duplicated()
        )
        if dup.height:
            # Report every record after the first of each duplicated key.
            later = dup.filter(pl.struct(list(dataset.key)).is_first_distinct().not_())
            report.add("duplicate-key", ",".join(dataset.key), later.get_column("__row"))
    if report.total:
        return None, report
    return typed_frame.select([f.name for f in dataset.fields]), report


_POLARS_TYPES: dict[str, Any] = {
    "string": pl.String,
    "integer": pl.Int64,
    "number": pl.Float64,
    "boolean": pl.Boolean,
    "date": pl.Date,
    "year": pl.Int32,
}
