"""Vectorized validation of a submission against its dataset's fields in the governing agreement.

Every check is a polars expression over whole columns; nothing loops over rows in Python. A
submission is validated part by part as it streams in (see :mod:`records.ingest`); the
:class:`Validator` carries what spans parts: the row numbering, the error report, and the record
keys for the duplicate check at the end.

The result of each part is either a typed frame (the dataset's fields, in the agreement's order
and types) or nothing, and one report of (row, field, code, message) for the first errors, by
row, plus counts per code over the whole submission. Rows are numbered from 1 for the first
record: for CSV the record after the header (a quoted value may span lines), for NDJSON the
non-blank line, for a JSON array the element. Messages never contain values.

Rules beyond the Frictionless constraints: a blank string (empty or whitespace only) is a missing
value; fields of the dataset's primary key are required; numbers must be finite; when the
submission declares a period and the dataset has a period field, every record must be of that
period.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from agreements.categories import structural_mask
from policy.model import DatasetTerms, FieldTerms
from policy.vocabulary import FieldType

MAX_REPORTED = 100
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
# The text forms a boolean field accepts (in any case), published with the dataset's schema.
TRUE_VALUES = _TRUE
FALSE_VALUES = _FALSE
_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_FLOATS = (pl.Float32, pl.Float64)
_ROW = "__row"
# What may be echoed as a column name: no spaces, no run of three digits (identifiers, dates and
# numbers have them).
_NAME_LIKE = re.compile(r"^(?!.*[0-9]{3})[A-Za-z_][A-Za-z0-9_.-]{0,63}$")

MESSAGES = {
    "unknown-field": "This column is not a field of the dataset in the governing agreement.",
    "missing-field": "A required field of the dataset is missing from the submission.",
    "required": "A value is required.",
    "type": "The value is not of the field's type ({type}).",
    "enum": "The value is not one of the field's allowed values.",
    "minimum": "The value is below the field's minimum.",
    "maximum": "The value is above the field's maximum.",
    "pattern": "The value does not match the field's pattern.",
    "min-length": "The value is shorter than the field's minimum length.",
    "max-length": "The value is longer than the field's maximum length.",
    "period": "The record's period is not the period the submission declares.",
    "duplicate-key": "Another record in this submission has the same key.",
    "structural-zero": "The record's combination of values is one the agreement declares impossible.",
}

POLARS_TYPES: dict[str, Any] = {
    FieldType.STRING: pl.String,
    FieldType.INTEGER: pl.Int64,
    FieldType.NUMBER: pl.Float64,
    FieldType.BOOLEAN: pl.Boolean,
    FieldType.DATE: pl.Date,
    FieldType.YEAR: pl.Int32,
}


@dataclass
class ValidationReport:
    errors: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    # Read by the sealing thread while the reader thread adds errors: a flag, not a sum.
    failed: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def room(self) -> int:
        return max(MAX_REPORTED - len(self.errors), 0)

    def count(self, code: str, n: int) -> None:
        if n:
            self.counts[code] = self.counts.get(code, 0) + n
            self.failed = True

    def add(self, code: str, field_name: str | None, row: int | None, ftype: str = "") -> None:
        if self.room:
            self.errors.append(
                {
                    "row": row,
                    "field": field_name,
                    "code": code,
                    "message": MESSAGES[code].format(type=ftype),
                }
            )

    def as_dict(self) -> dict[str, Any]:
        errors = sorted(
            self.errors, key=lambda e: (e["row"] is not None, e["row"] or 0, e["field"] or "")
        )
        return {
            "error_count": self.total,
            "counts": dict(sorted(self.counts.items())),
            "errors": errors[:MAX_REPORTED],
            "truncated": self.total > len(errors[:MAX_REPORTED]),
        }


_BOOLEANS = {
    **{v: True for t in _TRUE for v in (t, t.upper(), t.capitalize())},
    **{v: False for f in _FALSE for v in (f, f.upper(), f.capitalize())},
}


def _typed(col: pl.Expr, dtype: pl.DataType, ftype: str, exact: bool) -> pl.Expr:
    """An expression converting ``col`` to the field type; null where conversion fails.

    The exact form strips surrounding whitespace and lower-cases booleans first. The fast form
    does neither (stripping allocates a copy of every string); it agrees with the exact form on
    every value it converts, and a value it cannot convert sends the batch to the exact form.
    """
    is_str = dtype == pl.String
    s = col.str.strip_chars() if is_str and exact else col
    if ftype == FieldType.STRING:
        return col if is_str else pl.lit(None, dtype=pl.String)
    if ftype == FieldType.INTEGER:
        if is_str:
            return s.cast(pl.Int64, strict=False)
        if dtype in _INTEGERS:
            return col.cast(pl.Int64, strict=False)
        if dtype in _FLOATS:
            whole = col.is_finite() & (col == col.floor())
            return pl.when(whole).then(col.cast(pl.Int64, strict=False)).otherwise(None)
        return pl.lit(None, dtype=pl.Int64)
    if ftype == FieldType.NUMBER:
        if is_str:
            number = s.cast(pl.Float64, strict=False)
        elif dtype in _INTEGERS or dtype in _FLOATS:
            number = col.cast(pl.Float64)
        else:
            return pl.lit(None, dtype=pl.Float64)
        return pl.when(number.is_finite()).then(number).otherwise(None)
    if ftype == FieldType.BOOLEAN:
        if dtype == pl.Boolean:
            return col
        if is_str and not exact:
            return col.replace_strict(_BOOLEANS, default=None, return_dtype=pl.Boolean)
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
    if ftype == FieldType.DATE:
        if is_str:
            return s.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
        return pl.lit(None, dtype=pl.Date)
    if ftype == FieldType.YEAR:
        if is_str:
            raw = s.cast(pl.Int32, strict=False)
        elif dtype in _INTEGERS:
            raw = col.cast(pl.Int32, strict=False)
        else:
            return pl.lit(None, dtype=pl.Int32)
        return pl.when(raw.is_between(1000, 9999)).then(raw).otherwise(None)
    raise ValueError(f"unknown field type {ftype}")


def _present(col: pl.Expr, dtype: pl.DataType, spec: FieldTerms, exact: bool) -> pl.Expr:
    """Whether a value is there: not null and, for text, not blank (empty or whitespace).

    The fast form counts only empty text as blank. It is used where a whitespace-only value
    cannot pass anyway: a non-string field (it does not convert) or a string field with an
    enum of non-blank values (it is not allowed); a failure sends the batch to the exact form.
    """
    if dtype != pl.String:
        return col.is_not_null()
    fast_enough = spec.type != FieldType.STRING or (
        spec.enum is not None and all(str(v).strip() for v in spec.enum)
    )
    if exact or not fast_enough:
        return col.is_not_null() & (col.str.strip_chars() != "")
    return col.is_not_null() & (col.str.len_bytes() > 0)


def _full_match(pattern: str) -> tuple[str, bool]:
    """The anchored pattern and whether polars' regex engine accepts it.

    Frictionless patterns match the whole value. Agreements are checked with Python's ``re``;
    a pattern that the Rust engine refuses (look-around, back-references) is checked in Python.
    """
    anchored = f"^(?:{pattern})$"
    try:
        pl.Series([""]).str.contains(anchored)
    except pl.exceptions.PolarsError:
        return anchored, False
    return anchored, True


def _pattern_mismatch(typed: pl.Expr, pattern: str) -> pl.Expr:
    anchored, native = _full_match(pattern)
    if native:
        return ~typed.str.contains(anchored)
    compiled = re.compile(pattern)
    return typed.map_elements(
        lambda v: compiled.fullmatch(v) is None, return_dtype=pl.Boolean, skip_nulls=True
    )


def unlisted_columns(
    columns: list[str], known: set[str] | dict[str, Any]
) -> tuple[list[str], str | None]:
    """The unlisted columns that may be named, and a hint about the header, if any.

    A column is named only when the row is evidently a header (it names at least one of the
    dataset's fields) and the name looks like a column name; in a file without a header row the
    "names" are values, which are never echoed.
    """
    is_header = any(name in known for name in columns)
    named = [c for c in columns if c not in known and is_header and _NAME_LIKE.match(c)]
    hint = None
    if len(columns) == 1 and ";" in columns[0]:
        hint = "The header is one column holding ';': separate fields with ',' not ';'."
    elif not is_header and columns:
        hint = "No column names a field of the dataset: is the header row missing?"
    return named, hint


class Validator:
    """Validates the parts of one submission in order; see the module docstring."""

    def __init__(self, dataset: DatasetTerms, *, period: str | None = None) -> None:
        self.dataset = dataset
        self.period = period
        self.report = ValidationReport()
        self.rows = 0
        self._known = {f.name: f for f in dataset.fields}
        # A hint for the header's problems (a ';' delimiter, a missing header row), if any.
        self.hint: str | None = None
        self._hashes: list[pl.Series] = []
        # A 64-bit hash of each record's typed key (null where a key field is missing), so that
        # duplicate keys are reported in the same pass as every other error of a rejected body.
        self._typed_keys: list[pl.Series] = []
        self._plans: dict[tuple[tuple[tuple[str, pl.DataType], ...], bool], _Plan] = {}
        # After :meth:`finish` of a valid body: the 64-bit hash of each stored record's key, for
        # the quality report's duplicates across submissions (see :mod:`records.quality`).
        self.key_hashes: pl.Series | None = None

    @property
    def ok(self) -> bool:
        return not self.report.failed

    def check_header(self, columns: list[str]) -> bool:
        """Check the column names of a format with a header row; False if the body must stop.

        Linear in the number of columns. An unlisted column is named when the row is evidently a
        header (it names at least one of the dataset's fields) and the name looks like a column
        name; otherwise by position only: in a file without a header row the "names" are values.
        """
        present = set(columns)
        named, self.hint = unlisted_columns(columns, self._known)
        nameable = set(named)
        for position, name in enumerate(columns, start=1):
            if name not in self._known:
                label = name if name in nameable else f"column {position}"
                self.report.count("unknown-field", 1)
                self.report.add("unknown-field", label, None)
        for spec in self.dataset.fields:
            if spec.name not in present and self._required(spec):
                self.report.count("missing-field", 1)
                self.report.add("missing-field", spec.name, None)
        return self.ok

    def _required(self, spec: FieldTerms) -> bool:
        return spec.required or spec.name in self.dataset.key

    def check(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        """Validate the next ``frame`` of records; return it typed, or None if it has errors."""
        offset = self.rows
        self.rows += frame.height
        unknown = [c for c in frame.columns if c not in self._known]
        if unknown:
            self.report.count("unknown-field", len(unknown))
            for _ in unknown:
                self.report.add("unknown-field", None, None)
            return None
        for exact in (False, True):
            plan = self._plan(frame.schema, exact)
            work = frame.with_columns(plan.typed)
            flags = work.select(plan.checks)
            counts = flags.sum().row(0, named=True)
            bad = {label: n for label, n in counts.items() if n}
            if not bad:
                self._remember_typed_keys(work)
                typed = work.select(plan.output)
                impossible = structural_mask(typed, self.dataset)
                if not impossible.any():
                    return typed
                self.report.count("structural-zero", int(impossible.sum()))
                first = (np.flatnonzero(impossible) + offset + 1)[: self.report.room]
                for row in first.tolist():
                    self.report.add("structural-zero", None, int(row))
                return None
        self._remember_typed_keys(work)
        for label, n in bad.items():
            self.report.count(plan.labels[label][1], int(n))
        room = self.report.room
        if room:
            found: list[tuple[int, str, str]] = []
            indexed = flags.with_row_index(_ROW, offset=offset + 1)
            for label in bad:
                name, code = plan.labels[label]
                rows = indexed.filter(pl.col(label)).get_column(_ROW).head(room).to_list()
                found.extend((row, name, code) for row in rows)
            for row, name, code in sorted(found)[:room]:
                self.report.add(code, name, row, self._known[name].type)
        return None

    def remember_keys(self, stored: pl.DataFrame) -> None:
        """Keep a 64-bit hash of each record key of a stored part (tokens for identifiers) for
        :meth:`finish`: eight bytes a record, whatever the key."""
        if self.dataset.key:
            self._hashes.append(stored.select(pl.struct(list(self.dataset.key)).hash()).to_series())

    def _remember_typed_keys(self, work: pl.DataFrame) -> None:
        if not self.dataset.key:
            return
        columns = [pl.col(f"__t_{name}") for name in self.dataset.key]
        complete = pl.all_horizontal([c.is_not_null() for c in columns])
        key = pl.when(complete).then(pl.struct(columns).hash(seed=7)).otherwise(None)
        self._typed_keys.append(work.select(key.alias("k")).to_series())

    def _typed_duplicates(self) -> None:
        """Duplicate keys of a body that has other errors too, found from the typed keys' 64-bit
        hashes (nothing is stored to compare exactly; a body that is rejected anyway)."""
        keys, self._typed_keys = self._typed_keys, []
        if not keys:
            return
        series = pl.concat(keys) if len(keys) > 1 else keys[0]
        later = series.is_duplicated() & ~series.is_first_distinct() & series.is_not_null()
        rows = later.arg_true()
        if rows.len():
            self.report.count("duplicate-key", rows.len())
            names = ",".join(self.dataset.key)
            for row in (rows + 1).head(self.report.room).to_list():
                self.report.add("duplicate-key", names, row)

    def finish(self, read_back: Callable[[list[str]], Iterator[pl.DataFrame]]) -> None:
        """The checks that need every record: duplicate record keys.

        Equal hashes are found in one pass over the 64-bit integers; only if there are any are
        the key columns read back (``read_back`` yields the stored parts, in order, with the
        given columns) to compare the candidates exactly.
        """
        hashes, self._hashes = self._hashes, []
        if not self.ok:
            self._typed_duplicates()
            return
        self._typed_keys = []
        if not hashes:
            return
        series = pl.concat(hashes) if len(hashes) > 1 else hashes[0]
        self.key_hashes = series
        candidates = series.is_duplicated().arg_true()
        if not candidates.len():
            return
        keys = list(self.dataset.key)
        stored = pl.concat(list(read_back(keys)))
        frame = stored.with_row_index(_ROW, offset=1)[candidates]
        key = pl.struct(keys)
        later = frame.filter(key.is_duplicated() & ~key.is_first_distinct())
        if later.height:
            self.report.count("duplicate-key", later.height)
            for row in later.get_column(_ROW).head(self.report.room).to_list():
                self.report.add("duplicate-key", ",".join(keys), row)

    def _plan(self, schema: pl.Schema, exact: bool) -> _Plan:
        signature = (tuple(schema.items()), exact)
        plan = self._plans.get(signature)
        if plan is None:
            plan = self._plans[signature] = self._build(schema, exact)
        return plan

    def _build(self, schema: pl.Schema, exact: bool) -> _Plan:
        typed: list[pl.Expr] = []
        checks: list[pl.Expr] = []
        labels: dict[str, tuple[str, str]] = {}
        output: list[pl.Expr] = []
        for spec in self.dataset.fields:
            tname = f"__t_{spec.name}"
            if spec.name in schema:
                dtype = schema[spec.name]
                raw = pl.col(spec.name)
                present = _present(raw, dtype, spec, exact)
                conv = _typed(raw, dtype, spec.type, exact)
                if spec.type == FieldType.STRING:
                    conv = pl.when(present).then(conv).otherwise(None)
                typed.append(conv.alias(tname))
            else:
                # An optional field absent from the body (or a JSON record without the key).
                present = pl.lit(False)
                typed.append(pl.lit(None, dtype=POLARS_TYPES[spec.type]).alias(tname))
            t = pl.col(tname)
            for code, expr in self._checks(spec, t, present):
                label = f"__c{len(labels)}"
                labels[label] = (spec.name, code)
                checks.append(expr.fill_null(False).alias(label))
            output.append(t.alias(spec.name))
        return _Plan(typed, checks, labels, output)

    def _checks(self, spec: FieldTerms, t: pl.Expr, present: pl.Expr) -> list[tuple[str, pl.Expr]]:
        checks: list[tuple[str, pl.Expr]] = []
        if self._required(spec):
            checks.append(("required", ~present))
        checks.append(("type", present & t.is_null()))
        ok = present & t.is_not_null()
        if spec.enum is not None:
            allowed = (
                [str(v) for v in spec.enum] if spec.type == FieldType.STRING else list(spec.enum)
            )
            checks.append(("enum", ok & ~t.is_in(allowed)))
        if spec.minimum is not None and spec.type in (
            FieldType.INTEGER,
            FieldType.NUMBER,
            FieldType.YEAR,
        ):
            checks.append(("minimum", ok & (t < spec.minimum)))
        if spec.maximum is not None and spec.type in (
            FieldType.INTEGER,
            FieldType.NUMBER,
            FieldType.YEAR,
        ):
            checks.append(("maximum", ok & (t > spec.maximum)))
        if spec.type == FieldType.STRING:
            if spec.pattern is not None:
                checks.append(("pattern", ok & _pattern_mismatch(t, spec.pattern)))
            if spec.min_length is not None:
                checks.append(("min-length", ok & (t.str.len_chars() < spec.min_length)))
            if spec.max_length is not None:
                checks.append(("max-length", ok & (t.str.len_chars() > spec.max_length)))
        if self.period is not None and spec.name == self.dataset.period_field:
            checks.append(("period", ok & (t.cast(pl.String) != self.period)))
        return checks


@dataclass(frozen=True)
class _Plan:
    typed: list[pl.Expr]
    checks: list[pl.Expr]
    labels: dict[str, tuple[str, str]]
    output: list[pl.Expr]
