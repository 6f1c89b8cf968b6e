"""The ingest pipeline: body bytes in, sealed segment parts out, in one pass.

Runs in a worker thread while the HTTP layer is still receiving the body (see
``api/routers/submissions.py``): decode, parse a batch of records, validate it, replace
identifiers with linkage tokens, and seal it as a segment part, spilled to a scratch file as
ciphertext. Memory is bounded by a part, and nothing touches the database: the caller stores the
result in one short transaction once the whole body has been read and found valid (a submission
is stored whole or not at all).

Once any record fails validation, later batches are still validated (the report counts every
error in the body) but no longer pseudonymized or sealed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from policy.model import DatasetTerms
from records import intake
from records.errors import MalformedBody, SubmissionRejected
from records.pseudonymize import Tokenizer
from records.validate import Validator
from records.vault import SegmentContext, SegmentWriter

# Rows per sealed part: large enough for good compression and few inserts, small enough that
# the last part (processed after the last byte arrives) adds little latency.
PART_ROWS = 65_536


@dataclass(frozen=True)
class IngestSpec:
    fmt: str
    coding: str
    limits: intake.IntakeLimits
    dataset: DatasetTerms
    period: str | None
    tokenizer: Tokenizer
    segment: SegmentContext
    spill: Path
    # Called with the column names as soon as they are known (and again when a JSON batch
    # brings new ones): raises to refuse the submission before the rest is read.
    on_columns: Callable[[list[str]], None]


@dataclass
class Prepared:
    """An ingested, valid submission, sealed and ready to store."""

    columns: list[str]
    writer: SegmentWriter
    schema: dict[str, str]
    text_bytes: int = 0
    raw_bytes: int = 0

    @property
    def row_count(self) -> int:
        return self.writer.row_count


def _parts(typed: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    pending: list[pl.DataFrame] = []
    rows = 0
    for frame in typed:
        pending.append(frame)
        rows += frame.height
        if rows >= PART_ROWS:
            yield pl.concat(pending, rechunk=True) if len(pending) > 1 else pending[0]
            pending, rows = [], 0
    if pending:
        yield pl.concat(pending, rechunk=True) if len(pending) > 1 else pending[0]


def ingest(source: intake.Readable, spec: IngestSpec) -> Prepared:
    """Read, validate, pseudonymize and seal a whole body. Raises a domain error to refuse it."""
    stream = intake.decoded(source, spec.fmt, spec.coding, spec.limits)
    reader = intake.open_reader(spec.fmt, stream, spec.limits)
    validator = Validator(spec.dataset, period=spec.period)
    columns: list[str] = []
    if isinstance(reader, intake.CsvReader):
        columns = reader.header()
        spec.on_columns(columns)
        if not validator.check_header(columns):
            raise SubmissionRejected(
                f"{validator.report.total} problem(s) with the header; nothing was stored.",
                validator.report.as_dict(),
            )
    writer = SegmentWriter(spec.segment, spec.spill)
    schema: dict[str, str] = {}

    def typed_frames() -> Iterator[pl.DataFrame]:
        for frame in reader.frames():
            new = [c for c in frame.columns if c not in columns]
            if new:
                columns.extend(new)
                spec.on_columns(list(columns))
            typed = validator.check(frame)
            if typed is not None and validator.ok:
                yield typed

    try:
        for part in _parts(typed_frames()):
            if not validator.ok:
                continue
            stored = spec.tokenizer.pseudonymize(part, spec.dataset)
            validator.remember_keys(stored, writer.row_count)
            writer.add(stored)
            if not schema:
                schema = {name: str(dtype) for name, dtype in stored.schema.items()}
        validator.finish()
    finally:
        writer.close()
    if stream.error is not None:  # pragma: no cover - a reader swallowed a stream error
        raise stream.error
    if not validator.ok:
        raise SubmissionRejected(
            f"{validator.report.total} problem(s) found; nothing was stored.",
            validator.report.as_dict(),
        )
    if writer.row_count == 0:
        raise MalformedBody("The body holds no records.")
    return Prepared(
        columns=columns,
        writer=writer,
        schema=schema,
        text_bytes=stream.text_bytes,
        raw_bytes=stream.raw_bytes,
    )
