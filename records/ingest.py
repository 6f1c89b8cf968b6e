"""The ingest pipeline: body bytes in, sealed segment parts out, in one pass.

Runs while the HTTP layer is still receiving the body (see ``api/routers/submissions.py``), in
two threads joined by a short queue:

* the reader thread decodes, parses a block of records, validates it, and hands it on typed;
* the calling thread replaces identifiers with linkage tokens and seals each part, spilling it to
  a scratch file as ciphertext.

Two threads because the stages stress different things: parsing and validation run in Arrow and
polars (which release the GIL), tokenization is a Python loop over hashlib (which holds it), so
the two overlap. Memory is bounded by a few parts, and nothing touches the database: the caller
stores the result in one short transaction once the whole body has been read and found valid (a
submission is stored whole or not at all).

Once any record fails validation, later blocks are still validated (the report counts every
error in the body) but no longer pseudonymized or sealed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]

from policy.model import DatasetTerms
from records import intake
from records.errors import MalformedBody, SubmissionRejected
from records.pseudonymize import Tokenizer
from records.quality import Collector
from records.validate import Validator
from records.vault import SegmentContext, SegmentWriter

# Rows per sealed part at least: large enough for good compression and few inserts, small
# enough that the last part (processed after the last byte arrives) adds little latency.
PART_ROWS = 65_536
_DONE = object()


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
    # The sheet of a spreadsheet to read (None: the first).
    sheet: str | None = None


@dataclass
class Prepared:
    """An ingested, valid submission, sealed and ready to store."""

    columns: list[str]
    writer: SegmentWriter
    schema: dict[str, str]
    text_bytes: int = 0
    raw_bytes: int = 0
    # The CSV delimiter told from the header (None for other formats): stated in the receipt.
    delimiter: str | None = None
    # The data-quality report as far as this body alone tells it (see records.quality).
    quality: dict[str, Any] = field(default_factory=dict)
    # The 64-bit hash of each stored record's key (None without a primary key).
    key_hashes: pl.Series | None = None

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


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class IngestFailure(RuntimeError):
    """An unexpected failure inside polars or Arrow. Their messages may quote record values,
    so only the exception's type is kept: this is logged as a server error, never echoed."""


def _sanitized(exc: BaseException) -> BaseException:
    if isinstance(exc, pl.exceptions.PolarsError | pa.ArrowException):
        failure = IngestFailure(f"{type(exc).__module__}.{type(exc).__name__} while ingesting")
        failure.__suppress_context__ = True
        return failure
    return exc


def ingest(source: intake.Readable, spec: IngestSpec) -> Prepared:
    """Read, validate, pseudonymize and seal a whole body. Raises a domain error to refuse it.

    If ``source`` has an ``abort()`` method it is called when this fails, so that a reader
    blocked on it (waiting for more of the body) stops.
    """
    stream = intake.decoded(source, spec.fmt, spec.coding, spec.limits)
    reader = intake.open_reader(
        spec.fmt,
        stream,
        spec.limits,
        max_columns=len(spec.dataset.fields),
        fields=spec.dataset.field_names,
        types={f.name: f.type for f in spec.dataset.fields},
        sheet=spec.sheet,
    )
    validator = Validator(spec.dataset, period=spec.period)
    collector = Collector(spec.dataset, period=spec.period)
    columns: list[str] = []
    delimiter: str | None = None
    if isinstance(reader, intake.CsvReader | intake.SpreadsheetReader):
        columns = reader.header()
        if isinstance(reader, intake.CsvReader):
            delimiter = reader.delimiter
        spec.on_columns(columns)
        if not validator.check_header(columns):
            hint = f" {validator.hint}" if validator.hint else ""
            raise SubmissionRejected(
                f"{validator.report.total} problem(s) with the header; nothing was stored.{hint}",
                validator.report.as_dict(),
            )
    handoff: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def typed_frames() -> Iterator[pl.DataFrame]:
        known = set(columns)  # a set: a JSON batch's columns are checked in linear time
        for frame in reader.frames():
            new = [c for c in frame.columns if c not in known]
            if new:
                columns.extend(new)
                known.update(new)
                spec.on_columns(list(columns))
            typed = validator.check(frame)
            if typed is not None and validator.ok:
                collector.add(typed)
                yield typed

    def offer(item: object) -> bool:
        # The consumer may have given up (and stopped reading the queue): never block on it.
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for part in _parts(typed_frames()):
                if not offer(part):
                    return
            offer(_DONE)
        except BaseException as exc:
            offer(_Failed(_sanitized(exc)))

    producer = threading.Thread(target=produce, name="ingest-reader", daemon=True)
    writer = SegmentWriter(spec.segment, spec.spill)
    schema: dict[str, str] = {}
    producer.start()
    try:
        while (item := handoff.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error from None
            assert isinstance(item, pl.DataFrame)
            if not validator.ok:
                continue
            stored = spec.tokenizer.pseudonymize(item, spec.dataset)
            validator.remember_keys(stored)
            writer.add(stored)
            if not schema:
                schema = {name: str(dtype) for name, dtype in stored.schema.items()}
        validator.finish(writer.read_back)
    except BaseException as exc:
        stop.set()
        abort = getattr(source, "abort", None)
        if abort is not None:
            abort()
        clean = _sanitized(exc)
        if clean is exc:
            raise
        raise clean from None
    finally:
        producer.join()
        writer.close()
    if not validator.ok:
        raise SubmissionRejected(
            f"{validator.report.total} problem(s) found; nothing was stored.",
            validator.report.as_dict(),
            rows=validator.rows,
        )
    if writer.row_count == 0:
        raise MalformedBody("The body holds no records.")
    return Prepared(
        columns=columns,
        writer=writer,
        schema=schema,
        text_bytes=stream.text_bytes,
        raw_bytes=stream.raw_bytes,
        delimiter=delimiter,
        quality=collector.report(),
        key_hashes=validator.key_hashes,
    )
