"""From the bytes of a request body to frames of records, streamed and within limits.

The body flows through a :class:`BodyPipe` (filled by the HTTP layer as it arrives, drained by a
worker thread), then :class:`DecodedStream` (gzip, the UTF-8 checks and the limits), then a
reader for the format, which yields polars frames of a bounded number of records. No stage holds
the whole body: memory is bounded by the pipe's capacity plus one batch of records.

Limits are enforced while reading, never after: the decompressed size, the compression ratio (a
gzip bomb stops at the first block that crosses the line), and the line length (CSV and NDJSON)
or record size (a JSON array, which may be one long line).

Formats:
  CSV         UTF-8; a header row of unique, non-empty column names, delimited by ',', ';' or
              tab: the delimiter is the one that splits the header into names of the dataset's
              fields (RFC 4180's media type has no parameter for it), and a header that more
              than one of them splits so is refused as ambiguous; every record has exactly
              as many fields as the header; RFC 4180 quoting (quoted values may span lines);
              blank lines are skipped. The text is cut at record boundaries into blocks that
              Arrow's CSV reader parses (it refuses ragged rows, which polars would pad).
  NDJSON      one JSON object per line; blank lines are skipped.
  JSON        one array of flat objects. It is split into objects by a vectorized scan (see
              :class:`JsonArraySplitter`: no streaming JSON-array parser ships with polars or
              Arrow) and each batch is parsed as NDJSON by polars.
  XLSX, ODS   a spreadsheet (Office Open XML or OpenDocument), the first sheet or a named one:
              the first non-blank row is the header, blank rows are skipped. A spreadsheet is a
              zip archive: it is read whole (within the decompressed-size limit), every member
              is inflated here with the size and ratio limits as for gzip and its checksum
              verified, and only then does calamine parse the verified, stored copy, so a zip
              bomb stops at the limit and calamine never inflates anything. Cells keep their
              types (see :class:`SpreadsheetReader`).
Records must be flat: a nested object or array is refused. Encoding: UTF-8 only. A UTF-8 byte
order mark (as Excel writes it) is skipped before anything else reads the body, so it never
becomes part of the first column name; a UTF-16 or UTF-32 byte order mark, a NUL byte, or an
invalid UTF-8 sequence is refused with 415.
"""

from __future__ import annotations

import csv
import datetime
import io
import threading
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import numpy as np
import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import python_calamine

from core import jsonscan
from records.errors import (
    AmbiguousDelimiter,
    MalformedBody,
    SubmissionTooLarge,
    TooManyColumns,
    UnsupportedEncoding,
)

MEDIA_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/json": "json",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
}
SPREADSHEETS = frozenset({"xlsx", "ods"})
_SUPPORTED = (
    "text/csv, application/x-ndjson, application/json, "
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet (.xlsx) or "
    "application/vnd.oasis.opendocument.spreadsheet (.ods)"
)
CHUNK = 1 << 20
# Text parsed at a time: about 100,000 records of a typical CSV.
TEXT_BLOCK = 8 << 20
_UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"
_NOT_UTF8 = "The body is not valid UTF-8."
# Comma first: the default, and RFC 4180's. Semicolon is what Excel writes where the comma is
# the decimal separator; tab is what spreadsheets export as "text".
DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True)
class IntakeLimits:
    max_bytes: int
    max_ratio: int = 100
    max_line_bytes: int = 1 << 20


def media_format(content_type: str | None) -> str:
    """Map a Content-Type header to ``csv``, ``ndjson`` or ``json``; charset must be UTF-8."""
    if not content_type:
        raise UnsupportedEncoding(f"A Content-Type header is required ({_SUPPORTED}).")
    parts = [p.strip() for p in content_type.split(";")]
    fmt = MEDIA_TYPES.get(parts[0].lower())
    if fmt is None:
        raise UnsupportedEncoding(f"Unsupported Content-Type; use {_SUPPORTED}.")
    for param in parts[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise UnsupportedEncoding("Only UTF-8 bodies are accepted.")
    return fmt


def content_coding(encoding: str | None) -> str:
    """Map a Content-Encoding header to ``identity`` or ``gzip``."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return "identity"
    if enc in ("gzip", "x-gzip"):
        return "gzip"
    raise UnsupportedEncoding("Only gzip content encoding is supported.")


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class BodyAborted(Exception):
    """The body stopped before its end (client gone, size limit): nothing may be stored."""


class BodyPipe:
    """Bytes from the event loop to a worker thread, with bounded buffering.

    ``feed`` is awaited by the task that receives the body; it waits (without blocking the event
    loop) while ``capacity`` bytes are unread. ``read`` blocks the worker until bytes arrive.
    """

    def __init__(self, capacity: int = 16 << 20) -> None:
        self.capacity = capacity
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._aborted = False
        self._cond = threading.Condition()

    async def feed(self, chunk: bytes) -> None:
        while True:
            with self._cond:
                if self._aborted:
                    raise BodyAborted("the reader stopped")
                if self._buffered < self.capacity:
                    self._chunks.append(chunk)
                    self._buffered += len(chunk)
                    self._cond.notify_all()
                    return
            await anyio.sleep(0.002)

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Called by either side: the other side stops at its next step."""
        with self._cond:
            self._aborted = True
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify_all()

    def read(self, n: int = -1, /) -> bytes:
        with self._cond:
            while not self._chunks:
                if self._aborted:
                    raise BodyAborted("the body was not received in full")
                if self._done:
                    return b""
                self._cond.wait()
            chunk = self._chunks.popleft()
            if 0 <= n < len(chunk):
                self._chunks.appendleft(chunk[n:])
                chunk = chunk[:n]
            self._buffered -= len(chunk)
            return chunk


class DecodedStream:
    """The decoded text of a body: gzip undone, byte order mark handled, limits enforced.

    ``read(n)`` returns at most ``n`` bytes (any amount for ``n < 0``) and ``b""`` at the end.
    Errors raised here are domain errors with messages that never contain body content.
    """

    def __init__(
        self,
        source: Readable,
        coding: str,
        limits: IntakeLimits,
        *,
        check_lines: bool,
        binary: bool = False,
    ) -> None:
        self.source = source
        self.limits = limits
        self.check_lines = check_lines
        # A binary body (a spreadsheet) is neither text nor lines: no BOM or NUL checks.
        self.binary = binary
        self.raw_bytes = 0
        self.text_bytes = 0
        self._gzip = coding == "gzip"
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if self._gzip else None
        self._buffer: deque[bytes] = deque()
        self._eof = False
        self._started = False
        self._pending = b""  # the first bytes, until there are enough to look for a BOM
        self._line = 0

    def read(self, n: int = -1, /) -> bytes:
        while not self._buffer and not self._eof:
            self._fill()
        if not self._buffer:
            return b""
        chunk = self._buffer.popleft()
        if 0 <= n < len(chunk):
            self._buffer.appendleft(chunk[n:])
            chunk = chunk[:n]
        return chunk

    def readline(self, limit: int) -> bytes:
        """One line including its newline (or up to the end); longer than ``limit`` is refused."""
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = self.read(CHUNK)
            if not chunk:
                return b"".join(parts)
            cut = chunk.find(b"\n")
            if cut >= 0:
                parts.append(chunk[: cut + 1])
                if cut + 1 < len(chunk):
                    self._buffer.appendleft(chunk[cut + 1 :])
                return b"".join(parts)
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise MalformedBody(f"A line is longer than {limit} bytes.")

    # -- decoding -------------------------------------------------------------------------------
    def _fill(self) -> None:
        raw = self.source.read(CHUNK)
        if not raw:
            self._finish()
            return
        self.raw_bytes += len(raw)
        if self._inflater is None:
            self._emit(raw)
            return
        try:
            data = self._inflater.decompress(raw, CHUNK)
            while True:
                self._emit(data)
                if self._inflater.eof and self._inflater.unused_data:
                    # A concatenated gzip member (RFC 1952 allows several).
                    rest = self._inflater.unused_data
                    self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                    data = self._inflater.decompress(rest, CHUNK)
                    continue
                if not self._inflater.unconsumed_tail:
                    break
                data = self._inflater.decompress(self._inflater.unconsumed_tail, CHUNK)
        except zlib.error:
            raise MalformedBody("The body is not valid gzip.") from None

    def _finish(self) -> None:
        self._eof = True
        if self.raw_bytes == 0:
            raise MalformedBody("The body is empty.")
        if self._inflater is not None:
            try:
                self._emit(self._inflater.flush())
            except zlib.error:
                raise MalformedBody("The body is not valid gzip.") from None
            if not self._inflater.eof:
                raise MalformedBody("The gzip stream is truncated.")
        if not self._started and not self.binary:
            self._start(b"")

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self.text_bytes += len(data)
        if self.text_bytes > self.limits.max_bytes:
            raise SubmissionTooLarge(
                f"The decompressed body exceeds the limit of {self.limits.max_bytes} bytes."
            )
        # The ratio is checked against what has been read so far, with 1 MiB of slack so that
        # the first block of a small, highly compressible body is not refused.
        if self._gzip and self.text_bytes > self.raw_bytes * self.limits.max_ratio + CHUNK:
            raise SubmissionTooLarge(
                f"The body expands more than {self.limits.max_ratio} times when decompressed."
            )
        if self.binary:
            self._buffer.append(data)
            return
        if not self._started:
            self._pending += data
            if len(self._pending) < 4:
                return
            data, self._pending = self._pending, b""
            self._start(data)
            return
        self._check(data)
        self._buffer.append(data)

    def _start(self, head: bytes) -> None:
        self._started = True
        head = self._pending + head
        self._pending = b""
        if head.startswith(_UTF32_BOMS) or head.startswith(_UTF16_BOMS):
            raise UnsupportedEncoding("The body is UTF-16 or UTF-32; only UTF-8 is accepted.")
        if head.startswith(_UTF8_BOM):
            head = head[len(_UTF8_BOM) :]
        if head:
            self._check(head)
            self._buffer.append(head)

    def _check(self, data: bytes) -> None:
        if b"\x00" in data:
            raise UnsupportedEncoding(
                "The body contains NUL bytes: it is not UTF-8 text (UTF-16 without a byte order "
                "mark?)."
            )
        if not self.check_lines:
            return
        limit = self.limits.max_line_bytes
        if self._line + len(data) <= limit:
            cut = data.rfind(b"\n")
            self._line = self._line + len(data) if cut < 0 else len(data) - cut - 1
            return
        newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        if newlines.size == 0:
            longest = self._line + len(data)
            self._line = longest
        else:
            longest = max(
                self._line + int(newlines[0]),
                int(np.diff(newlines).max(initial=0)) - 1,
            )
            self._line = len(data) - int(newlines[-1]) - 1
        if max(longest, self._line) > limit:
            raise MalformedBody(f"A line is longer than {limit} bytes.")


# -- readers -------------------------------------------------------------------------------------


class RecordReader(Protocol):
    columns: list[str] | None

    def frames(self) -> Iterator[pl.DataFrame]: ...


def _safe(name: str) -> str:
    """A column name as it may appear in an error: short, printable, never a value-like blob."""
    clean = "".join(ch for ch in name if ch.isalnum() or ch in "_-. ")[:64]
    return repr(clean) if clean else "(unnamed)"


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    for dtype in frame.schema.values():
        if isinstance(dtype, pl.Struct | pl.List | pl.Array | pl.Object):
            raise MalformedBody(_NESTED)
    return frame


def detect_delimiter(text: str, fields: frozenset[str] | set[str]) -> str:
    """The delimiter of a CSV header line, told by the dataset's field names.

    A delimiter fits when it occurs in the line and splitting by it gives at least one name of
    a field. None fits: the comma (the header's problems are then reported as they are). More
    than one fits: refused, since either reading would take values for names.
    """
    if not fields:
        return ","
    fits = []
    for delimiter in DELIMITERS:
        if delimiter not in text:
            continue
        try:
            names = next(csv.reader([text], delimiter=delimiter, strict=True), [])
        except csv.Error:
            continue
        if any(name.strip() in fields for name in names):
            fits.append(delimiter)
    if len(fits) > 1:
        shown = " and ".join("tab" if d == "\t" else f"'{d}'" for d in fits)
        raise AmbiguousDelimiter(
            f"The CSV header names the dataset's fields when split by {shown}; send it with "
            "commas as delimiters (and no ';' or tab in column names)."
        )
    return fits[0] if fits else ","


class CsvReader:
    """CSV with a header row, parsed by Arrow's streaming reader into string columns."""

    def __init__(
        self,
        stream: DecodedStream,
        limits: IntakeLimits,
        max_columns: int | None = None,
        fields: frozenset[str] = frozenset(),
    ) -> None:
        self.stream = stream
        self.limits = limits
        self.max_columns = max_columns
        self.fields = fields
        self.delimiter = ","
        self.columns: list[str] | None = None
        self._ragged: tuple[int, int] | None = None

    def header(self) -> list[str]:
        line = self.stream.readline(self.limits.max_line_bytes)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsupportedEncoding(_NOT_UTF8) from None
        text = text.rstrip("\r\n")
        if not text.strip():
            raise MalformedBody("The CSV header row is missing.")
        self.delimiter = detect_delimiter(text, self.fields)
        try:
            header = next(csv.reader([text], delimiter=self.delimiter, strict=True), [])
        except csv.Error:
            raise MalformedBody("The CSV header row is not well-formed.") from None
        if self.max_columns is not None and len(header) > self.max_columns:
            # Refused before anything else looks at the names: it cannot succeed.
            raise TooManyColumns(
                f"The CSV header has {len(header)} columns; the dataset has only "
                f"{self.max_columns} field(s)."
            )
        names = [h.strip() for h in header]
        seen: set[str] = set()  # linear: one set lookup a name
        for position, name in enumerate(names, start=1):
            if not name:
                raise MalformedBody(f"The CSV header has an empty column name (column {position}).")
            if name in seen:
                raise MalformedBody(
                    f"The CSV header repeats a column name (column {position}, {_safe(name)})."
                )
            seen.add(name)
        self.columns = names
        return names

    def _on_invalid(self, row: Any) -> str:
        self._ragged = (int(row.expected_columns), int(row.actual_columns))
        return "error"

    def frames(self) -> Iterator[pl.DataFrame]:
        names = self.columns or self.header()
        carry = b""
        longest = max(TEXT_BLOCK, 2 * self.limits.max_line_bytes)
        while True:
            block = _read_block(self.stream, TEXT_BLOCK)
            text = carry + block if carry else block
            if not block:
                if text.count(b'"') % 2:
                    raise MalformedBody("A quoted CSV value is not closed.")
                if text.strip():
                    yield self._parse(text, names)
                return
            cut = _record_boundary(text)
            if cut < 0:
                carry = text
                if len(carry) > longest:
                    raise MalformedBody(
                        f"A CSV record is longer than {self.limits.max_line_bytes} bytes "
                        "(or a quote is not closed)."
                    )
                continue
            carry = text[cut:]
            frame = self._parse(text[:cut], names)
            if frame.height:
                yield frame

    def _parse(self, text: bytes, names: list[str]) -> pl.DataFrame:
        try:
            table = pacsv.read_csv(
                pa.py_buffer(text),
                read_options=pacsv.ReadOptions(column_names=names, use_threads=True),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.delimiter,
                    # Quoted line breaks are costly to allow: only where a quote occurs at all.
                    newlines_in_values=b'"' in text,
                    invalid_row_handler=self._on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                    check_utf8=True,
                ),
            )
        except pa.ArrowInvalid as exc:
            raise self._translate(exc) from None
        return pl.from_arrow(table)  # type: ignore[return-value]

    def _translate(self, exc: pa.ArrowInvalid) -> Exception:
        # Arrow's messages quote the offending row: never pass them on.
        message = str(exc)
        if "UTF8" in message or "UTF-8" in message:
            return UnsupportedEncoding(_NOT_UTF8)
        if self._ragged is not None:
            expected, actual = self._ragged
            return MalformedBody(
                f"A CSV record has {actual} field(s) where the header has {expected} "
                "(an unbalanced quote can cause this too)."
            )
        return MalformedBody("The body is not well-formed CSV.")


def _record_boundary(text: bytes) -> int:
    """The offset just after the last line break that ends a record, or -1.

    With RFC 4180 quoting a line break ends a record exactly when an even number of quote
    characters precedes it (a doubled quote inside a quoted value counts twice).
    """
    nl = text.rfind(b"\n")
    if nl < 0:
        return -1
    if b'"' not in text:
        return nl + 1
    quotes = text.count(b'"', 0, nl)
    while quotes % 2:
        prev = text.rfind(b"\n", 0, nl)
        if prev < 0:
            return -1
        quotes -= text.count(b'"', prev, nl)
        nl = prev
    return nl + 1


_NESTED = "A record holds a nested object or array; records must be flat."


def _read_ndjson(text: bytes) -> pl.DataFrame:
    if not text.strip():
        return pl.DataFrame()
    # Records are flat objects, so nothing may nest deeper than one level; checked before polars
    # sees the text, whose reader recurses (deeply nested brackets crash the process).
    if jsonscan.shape(text, count_items=False).depth > 1:
        raise MalformedBody(_NESTED)
    try:
        frame = pl.read_ndjson(io.BytesIO(text), infer_schema_length=None)
    except pl.exceptions.PolarsError as exc:
        message = str(exc).lower()
        if "utf-8" in message or "utf8" in message:
            raise UnsupportedEncoding(_NOT_UTF8) from None
        raise MalformedBody(
            "The body is not well-formed JSON: each record must be an object."
        ) from None
    return _flat(frame)


class NdjsonReader:
    """One JSON object per line, parsed by polars a block of lines at a time."""

    def __init__(self, stream: DecodedStream, limits: IntakeLimits) -> None:
        self.stream = stream
        self.limits = limits
        self.columns: list[str] | None = None

    def frames(self) -> Iterator[pl.DataFrame]:
        carry = b""
        while True:
            block = _read_block(self.stream, TEXT_BLOCK)
            if not block:
                break
            text = carry + block
            cut = text.rfind(b"\n")
            if cut < 0:
                carry = text
                continue
            carry = text[cut + 1 :]
            frame = _read_ndjson(text[: cut + 1])
            if frame.height:
                yield frame
        if carry.strip():
            frame = _read_ndjson(carry)
            if frame.height:
                yield frame


def _read_block(stream: DecodedStream, size: int) -> bytes:
    parts: list[bytes] = []
    have = 0
    while have < size:
        chunk = stream.read(size - have)
        if not chunk:
            break
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts)


_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 13, 32]] = True


class JsonArraySplitter:
    """Turns a JSON array of flat objects, block by block, into newline-delimited objects.

    A vectorized scan, because neither polars nor Arrow parses a JSON array incrementally. Real
    quotes are those not escaped by an odd run of backslashes; a brace or bracket is structural
    when an even number of real quotes precedes it. The structural characters must read ``[``,
    then ``{ }`` pairs, then ``]`` (a brace or bracket inside an object is a nested value, which
    is refused), and outside the objects only whitespace and one comma between two objects may
    appear. Each complete object is then put on a line of its own for the NDJSON parser (a raw
    line break between tokens becomes a space; inside a string it is invalid JSON and refused).
    Text after the last complete object waits for the next block.
    """

    def __init__(self, max_record_bytes: int) -> None:
        self.max_record = max_record_bytes
        self.carry = b""
        self.opened = False
        self.closed = False
        self.objects = 0

    def feed(self, block: bytes, final: bool) -> bytes:
        if self.closed:
            if block.strip():
                raise MalformedBody("The body continues after the end of the JSON array.")
            return b""
        buf = self.carry + block
        arr = np.frombuffer(buf, dtype=np.uint8)
        quotes = np.flatnonzero(arr == 34)
        if quotes.size:
            quotes = _unescaped(arr, quotes)
        structural = np.flatnonzero((arr == 123) | (arr == 125) | (arr == 91) | (arr == 93))
        pos = structural[np.searchsorted(quotes, structural) % 2 == 0]
        toks = arr[pos]
        bracket = -1
        if not self.opened:
            if toks.size == 0:
                if final:
                    raise MalformedBody("An application/json body must be an array of objects.")
                self._keep(buf, 0)
                return b""
            if toks[0] != 91:
                raise MalformedBody("An application/json body must be an array of objects.")
            bracket = int(pos[0])
            pos, toks = pos[1:], toks[1:]
            self.opened = True
        closing = -1
        ends = np.flatnonzero(toks == 93)
        if ends.size:
            if ends[0] != toks.size - 1 or ends[0] % 2:
                raise MalformedBody("A record holds a nested array; records must be flat.")
            closing = int(pos[-1])
            pos, toks = pos[:-1], toks[:-1]
        pairs = toks.size // 2
        opens, closes = pos[0 : 2 * pairs : 2], pos[1 : 2 * pairs : 2]
        if (
            (toks[0 : 2 * pairs : 2] != 123).any()
            or (toks[1 : 2 * pairs : 2] != 125).any()
            or (toks.size % 2 and toks[-1] != 123)
            or (toks == 91).any()
        ):
            raise MalformedBody("A record holds a nested object or array; records must be flat.")
        if closing >= 0 and toks.size % 2:
            raise MalformedBody("The JSON array is not well-formed.")
        if pairs and int((closes - opens).max()) >= self.max_record:
            raise MalformedBody(f"A JSON record is longer than {self.max_record} bytes.")
        if closing >= 0:
            region_end = closing + 1
            if not _WS[arr[region_end:]].all():
                raise MalformedBody("The body continues after the end of the JSON array.")
        elif pairs:
            region_end = int(closes[-1]) + 1
        else:
            region_end = bracket + 1
        if final and closing < 0:
            raise MalformedBody("The JSON array is truncated.")
        region = arr[:region_end].copy()
        objects = self._check_between(region, quotes, opens, closes, bracket, closing)
        self.objects += pairs
        if closing >= 0:
            self.closed = True
            self.carry = b""
        else:
            self._keep(buf, region_end)
        if not pairs:
            return b""
        end = int(closes[-1]) + 1
        region = region[:end]
        region[~objects[:end]] = 32
        region[(region == 10) | (region == 13)] = 32
        region[closes[:-1] + 1] = 10
        return region.tobytes() + b"\n"

    def _keep(self, buf: bytes, at: int) -> None:
        self.carry = buf[at:]
        if len(self.carry) > self.max_record + TEXT_BLOCK:
            raise MalformedBody(f"A JSON record is longer than {self.max_record} bytes.")

    def _check_between(
        self,
        region: np.ndarray,
        quotes: np.ndarray,
        opens: np.ndarray,
        closes: np.ndarray,
        bracket: int,
        closing: int,
    ) -> np.ndarray:
        """Check what lies between the objects; return the mask of bytes inside objects."""
        n = region.size
        breaks = np.flatnonzero((region == 10) | (region == 13))
        if breaks.size and (np.searchsorted(quotes, breaks) % 2 == 1).any():
            raise MalformedBody("A JSON string holds a raw line break.")
        depth = np.zeros(n + 1, dtype=np.int8)
        depth[opens] += 1
        depth[closes + 1] -= 1
        objects = np.cumsum(depth[:n], dtype=np.int8) > 0
        inside = objects.copy()
        if bracket >= 0:
            inside[: bracket + 1] = True
        if closing >= 0:
            inside[closing] = True
        # Outside the objects, the opening bracket and the closing one set aside, only commas
        # may remain, one before each object except the array's first.
        outside = np.flatnonzero(~inside & ~_WS[region])
        if bracket >= 0 and not _WS[region[:bracket]].all():
            raise MalformedBody("An application/json body must be an array of objects.")
        if outside.size and (region[outside] != 44).any():
            raise MalformedBody("The JSON array is not well-formed.")
        first = 1 if self.objects == 0 else 0
        expected = np.arange(first, opens.size)
        if outside.size != expected.size or (np.searchsorted(opens, outside) != expected).any():
            raise MalformedBody("The JSON array is not well-formed.")
        return objects


def _unescaped(arr: np.ndarray, quotes: np.ndarray) -> np.ndarray:
    """Drop the quotes escaped by an odd run of backslashes (rare: checked one by one)."""
    suspects = np.flatnonzero((quotes > 0) & (arr[np.maximum(quotes - 1, 0)] == 92))
    if not suspects.size:
        return quotes
    keep = np.ones(quotes.size, dtype=bool)
    for i in suspects.tolist():
        q = int(quotes[i])
        run = 0
        while q - run - 1 >= 0 and arr[q - run - 1] == 92:
            run += 1
        if run % 2:
            keep[i] = False
    return quotes[keep]


class JsonArrayReader:
    def __init__(self, stream: DecodedStream, limits: IntakeLimits) -> None:
        self.stream = stream
        self.limits = limits
        self.columns: list[str] | None = None

    def frames(self) -> Iterator[pl.DataFrame]:
        splitter = JsonArraySplitter(self.limits.max_line_bytes)
        while True:
            block = _read_block(self.stream, TEXT_BLOCK)
            final = not block
            text = splitter.feed(block, final)
            if text.strip():
                frame = _read_ndjson(text)
                if frame.height:
                    yield frame
            if final:
                break


# -- spreadsheets ---------------------------------------------------------------------------------

_SHEET_ROWS = 65_536  # records a frame: like a CSV block


def _unzipped(data: bytes, limits: IntakeLimits) -> bytes:
    """The archive rewritten with every member stored, after inflating each one here within the
    limits (total size, ratio) and checking its CRC: what calamine reads is what was checked."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise MalformedBody("The body is not a readable spreadsheet (not a valid zip).") from None
    budget = min(limits.max_bytes, len(data) * limits.max_ratio + CHUNK)
    total = 0
    out = io.BytesIO()
    try:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as stored:
            for member in members:
                if member.is_dir():
                    continue
                if member.flag_bits & 0x1:
                    raise MalformedBody("The spreadsheet is encrypted; send it without a password.")
                parts: list[bytes] = []
                with archive.open(member) as fh:
                    while chunk := fh.read(CHUNK):
                        total += len(chunk)
                        if total > budget:
                            raise SubmissionTooLarge(
                                "The spreadsheet expands beyond the limits when decompressed "
                                f"(at most {limits.max_bytes} bytes and {limits.max_ratio} times "
                                "its size)."
                            )
                        parts.append(chunk)
                stored.writestr(member.filename, b"".join(parts))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error):
        raise MalformedBody("The spreadsheet is damaged (a member does not inflate).") from None
    except NotImplementedError:
        raise MalformedBody("The spreadsheet uses an unsupported compression method.") from None
    return out.getvalue()


def _cell_text(value: Any) -> str | None:
    """A cell as text: whole numbers without a decimal point, dates in ISO 8601."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time.min:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    return str(value)


def _typed_column(name: str, values: list[Any], ftype: str | None) -> pl.Series:
    """A column of cells, typed for the field it fills where every cell has that type, text
    otherwise (the validator parses text as it does a CSV's, and refuses what is not a value
    of the field's type)."""
    cells = [None if v == "" else v for v in values]
    present = [v for v in cells if v is not None]
    if ftype in ("integer", "year") and all(
        isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer()
        for v in present
    ):
        return pl.Series(name, [None if v is None else int(v) for v in cells], dtype=pl.Int64)
    if ftype == "number" and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in present
    ):
        return pl.Series(name, [None if v is None else float(v) for v in cells], dtype=pl.Float64)
    if ftype == "boolean" and all(isinstance(v, bool) for v in present):
        return pl.Series(name, cells, dtype=pl.Boolean)
    if ftype == "date" and all(
        isinstance(v, datetime.date)
        and (not isinstance(v, datetime.datetime) or v.time() == datetime.time.min)
        for v in present
    ):
        days = [v.date() if isinstance(v, datetime.datetime) else v for v in cells]
        return pl.Series(name, days, dtype=pl.Date)
    return pl.Series(name, [_cell_text(v) for v in cells], dtype=pl.String)


class SpreadsheetReader:
    """An .xlsx or .ods body: the first sheet (or ``sheet``), read as typed cells by calamine.

    Cell types: a number cell fills an integer or year field as an integer when it is whole
    (spreadsheets store every number as a float), a number field as a float; a boolean cell a
    boolean field; a date cell (or a date-time at midnight) a date field. A string field takes
    any cell as text: a number without a trailing ``.0``, a date in ISO 8601 (``2025-09-01``).
    A cell of another type than its field's is read as text and validated as in a CSV.
    """

    def __init__(
        self,
        stream: DecodedStream,
        limits: IntakeLimits,
        max_columns: int | None = None,
        types: dict[str, str] | None = None,
        sheet: str | None = None,
    ) -> None:
        self.stream = stream
        self.limits = limits
        self.max_columns = max_columns
        self.types = types or {}
        self.sheet = sheet
        self.columns: list[str] | None = None
        self._rows: Iterator[list[Any]] | None = None

    def _open(self) -> Iterator[list[Any]]:
        # The whole body (a zip is read from its end): the stream refuses one over the limit.
        data = _read_block(self.stream, self.limits.max_bytes + 1)
        stored = _unzipped(data, self.limits)
        del data
        try:
            workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(stored))
            if self.sheet is None:
                if not workbook.sheet_names:
                    raise MalformedBody("The spreadsheet has no sheet.")
                sheet = workbook.get_sheet_by_index(0)
            elif self.sheet in workbook.sheet_names:
                sheet = workbook.get_sheet_by_name(self.sheet)
            else:
                raise MalformedBody("The spreadsheet has no sheet of the name given in 'sheet'.")
            # Row by row: the sheet's cells stay in calamine's compact form, and only a batch
            # of records at a time becomes Python objects.
            rows: Iterator[list[Any]] = iter(sheet.iter_rows())
        except MalformedBody:
            raise
        except Exception:
            # calamine's messages may quote cell contents: never passed on.
            raise MalformedBody("The body is not a readable spreadsheet of its type.") from None
        return rows

    def header(self) -> list[str]:
        rows = self._open()
        for row in rows:
            if any(_cell_text(v) is not None for v in row):
                break
        else:
            raise MalformedBody("The spreadsheet is empty: no header row.")
        while row and _cell_text(row[-1]) is None:
            row = row[:-1]
        if self.max_columns is not None and len(row) > self.max_columns:
            raise TooManyColumns(
                f"The header row has {len(row)} columns; the dataset has only "
                f"{self.max_columns} field(s)."
            )
        names = [(_cell_text(v) or "").strip() for v in row]
        seen: set[str] = set()
        for position, name in enumerate(names, start=1):
            if not name:
                raise MalformedBody(f"The header row has an empty column name (column {position}).")
            if name in seen:
                raise MalformedBody(
                    f"The header row repeats a column name (column {position}, {_safe(name)})."
                )
            seen.add(name)
        self.columns = names
        self._rows = rows
        return names

    def frames(self) -> Iterator[pl.DataFrame]:
        names = self.columns or self.header()
        assert self._rows is not None
        width = len(names)
        batch: list[list[Any]] = []
        for row in self._rows:
            if len(row) > width:
                if any(_cell_text(v) is not None for v in row[width:]):
                    raise MalformedBody(f"A row has a value beyond the header's {width} column(s).")
                row = row[:width]
            if not any(_cell_text(v) is not None for v in row):
                continue  # a blank row, as in a CSV
            batch.append(row + [None] * (width - len(row)))
            if len(batch) >= _SHEET_ROWS:
                yield self._frame(names, batch)
                batch = []
        if batch:
            yield self._frame(names, batch)

    def _frame(self, names: list[str], rows: list[list[Any]]) -> pl.DataFrame:
        columns = list(zip(*rows, strict=True))
        return pl.DataFrame(
            [
                _typed_column(n, list(c), self.types.get(n))
                for n, c in zip(names, columns, strict=True)
            ]
        )


def open_reader(
    fmt: str,
    stream: DecodedStream,
    limits: IntakeLimits,
    *,
    max_columns: int | None = None,
    fields: frozenset[str] = frozenset(),
    types: dict[str, str] | None = None,
    sheet: str | None = None,
) -> RecordReader:
    """A reader for ``fmt``. ``max_columns`` (the dataset's field count) refuses, as soon as the
    header is read, a header that cannot succeed; ``fields`` (the dataset's field names) tell a
    CSV header's delimiter; ``types`` (field name to type) type a spreadsheet's cells, and
    ``sheet`` names the sheet to read (the first by default)."""
    if fmt == "csv":
        return CsvReader(stream, limits, max_columns, fields)
    if fmt in SPREADSHEETS:
        return SpreadsheetReader(stream, limits, max_columns, types, sheet)
    readers: dict[str, Callable[[DecodedStream, IntakeLimits], RecordReader]] = {
        "ndjson": NdjsonReader,
        "json": JsonArrayReader,
    }
    return readers[fmt](stream, limits)


def decoded(source: Readable, fmt: str, coding: str, limits: IntakeLimits) -> DecodedStream:
    binary = fmt in SPREADSHEETS
    return DecodedStream(
        source, coding, limits, check_lines=fmt not in ("json", *SPREADSHEETS), binary=binary
    )
