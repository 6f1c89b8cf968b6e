"""From a spooled request body to a frame of records: decoding, decompression and parsing.

Limits are enforced while reading, never after: total size, decompressed size and ratio (a gzip
bomb stops at the first chunk that crosses the line), and line length. Formats: CSV (UTF-8, a
UTF-8 byte order mark is skipped, header row required, unique non-empty column names), NDJSON
and a JSON array of objects.
"""

from __future__ import annotations

import csv
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from records.errors import BodyTooLarge, MalformedBody, UnsupportedEncoding

MEDIA_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/json": "json",
}
CHUNK = 1 << 20
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class IntakeLimits:
    max_bytes: int
    max_ratio: int = 100
    max_line_bytes: int = 1 << 20


def media_format(content_type: str | None) -> str:
    """Map a Content-Type header to ``csv``, ``ndjson`` or ``json``; charset must be UTF-8."""
    if not content_type:
        raise UnsupportedEncoding(
            "A Content-Type header is required (text/csv, application/x-ndjson or application/json)."
        )
    parts = [p.strip() for p in content_type.split(";")]
    fmt = MEDIA_TYPES.get(parts[0].lower())
    if fmt is None:
        raise UnsupportedEncoding(
            "Unsupported Content-Type; use text/csv, application/x-ndjson or application/json."
        )
    for param in parts[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise UnsupportedEncoding("Only UTF-8 bodies are accepted.")
    return fmt


def decompress(src: Path, dst: Path, encoding: str | None, limits: IntakeLimits) -> Path:
    """Undo Content-Encoding into ``dst`` (or return ``src`` for identity), within the limits."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return src
    if enc not in ("gzip", "x-gzip"):
        raise UnsupportedEncoding("Only gzip content encoding is supported.")
    compressed = src.stat().st_size
    cap = min(limits.max_bytes, max(compressed, 1) * limits.max_ratio)
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    written = 0
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            while chunk := fin.read(CHUNK):
                data = inflater.decompress(chunk, CHUNK)
                while True:
                    written += len(data)
                    if written > cap:
                        raise BodyTooLarge(
                            "The decompressed body exceeds the size or compression-ratio limit."
                        )
                    fout.write(data)
                    if not inflater.unconsumed_tail:
                        break
                    data = inflater.decompress(inflater.unconsumed_tail, CHUNK)
            tail = inflater.flush()
            written += len(tail)
            if written > cap:
                raise BodyTooLarge(
                    "The decompressed body exceeds the size or compression-ratio limit."
                )
            fout.write(tail)
            if not inflater.eof:
                raise MalformedBody("The gzip stream is truncated.")
    except zlib.error as exc:
        raise MalformedBody("The body is not valid gzip.") from exc
    return dst


def check_text(path: Path, limits: IntakeLimits) -> int:
    """Reject empty bodies, non-UTF-8 byte order marks and over-long lines; return the offset
    at which the content starts (3 if a UTF-8 byte order mark is present)."""
    size = path.stat().st_size
    if size == 0:
        raise MalformedBody("The body is empty.")
    with path.open("rb") as fh:
        head = fh.read(4)
        if head.startswith(_UTF16_32_BOMS):
            raise UnsupportedEncoding("The body is UTF-16 or UTF-32; only UTF-8 is accepted.")
        start = 3 if head.startswith(_UTF8_BOM) else 0
        fh.seek(0)
        carry = 0
        while chunk := fh.read(CHUNK):
            lines = chunk.split(b"\n")
            first = carry + len(lines[0])
            longest = max(first, *(len(x) for x in lines[1:])) if len(lines) > 1 else first
            if longest > limits.max_line_bytes:
                raise MalformedBody(f"A line is longer than {limits.max_line_bytes} bytes.")
            carry = len(lines[-1]) if len(lines) > 1 else first
    if size <= start:
        raise MalformedBody("The body is empty.")
    return start


def _csv_header(path: Path, start: int) -> list[str]:
    with path.open("rb") as fh:
        fh.seek(start)
        first = fh.readline()
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsupportedEncoding("The body is not valid UTF-8.") from exc
    header = next(csv.reader(io.StringIO(text)), [])
    names = [h.strip() for h in header]
    if not names or all(not n for n in names):
        raise MalformedBody("The CSV header row is missing.")
    if any(not n for n in names):
        raise MalformedBody("The CSV header has an empty column name.")
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise MalformedBody(f"The CSV header repeats a column name (column {position}).")
        seen.add(name)
    return names


def read_frame(path: Path, fmt: str, limits: IntakeLimits) -> pl.DataFrame:
    """Parse the body into a frame. CSV columns are strings; JSON keeps JSON's own types."""
    start = check_text(path, limits)
    try:
        if fmt == "csv":
            names = _csv_header(path, start)
            frame = pl.read_csv(
                path,
                has_header=True,
                new_columns=names,
                infer_schema=False,
                encoding="utf8",
                missing_utf8_is_empty_string=False,
                raise_if_empty=True,
            )
        elif fmt == "ndjson":
            frame = pl.read_ndjson(path, infer_schema_length=None)
        else:
            frame = pl.read_json(path, infer_schema_length=None)
    except pl.exceptions.ComputeError as exc:
        message = str(exc)
        if "utf-8" in message or "utf8" in message:
            raise UnsupportedEncoding("The body is not valid UTF-8.") from None
        if "more fields" in message:
            raise MalformedBody("A CSV row has more fields than the header.") from None
        raise MalformedBody(f"The body is not well-formed {fmt.upper()}.") from None
    except (pl.exceptions.PolarsError, ValueError, OSError):
        raise MalformedBody(f"The body is not well-formed {fmt.upper()}.") from None
    if frame.height == 0:
        raise MalformedBody("The body holds no records.")
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Struct | pl.List | pl.Array | pl.Object):
            raise MalformedBody(f"Field {_safe(name)} holds nested values; records must be flat.")
    return frame


def _safe(name: str) -> str:
    """A column name as it may appear in an error: short, printable, never a value-like blob."""
    clean = "".join(ch for ch in name if ch.isalnum() or ch in "_-. ")[:64]
    return repr(clean) if clean else "(unnamed)"
