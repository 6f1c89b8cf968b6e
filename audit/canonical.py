"""The byte form of an audit event that its Merkle leaf hashes, and the export line formats.

An entry's canonical form is the RFC 8785 JSON Canonicalization Scheme (JCS) of an object with
exactly the fields of :data:`ENTRY_FIELDS` (absent values null): members sorted by their UTF-16
code units, no insignificant whitespace, UTF-8, strings escaped minimally, numbers in
ECMAScript's shortest form (``1.0`` is ``1``), integers within +-(2**53 - 1). Times are RFC 3339
UTC strings with microseconds. An exported event carries exactly these fields, so anyone can
recompute the leaf hash with any JCS implementation, whatever spacing or member order the file
was re-serialized with.

Export formats (both carry the leaf hash the log recorded, base64 as in RFC 9162's JSON API):

* NDJSON: one line per event, the canonical entry with ``"leaf_hash"`` appended as its last key,
  so the canonical bytes are recovered by slicing, without re-serializing (this is what lets a
  million-event export verify in a couple of seconds). An event left out by an export filter is a
  line ``{"index":N,"leaf_hash":"..."}``: the tree still recomputes, the content is withheld.
* CSV: a header of :data:`EXPORT_COLUMNS`; null is an empty cell (the service stores empty strings
  as null, so this is lossless); list and object fields are canonical JSON text; a cell that a
  spreadsheet would run as a formula (``= + - @``, tab, CR) or that starts with ``'`` gets a
  ``'`` prefix, which readers strip. A left-out event has only ``index`` and ``leaf_hash``.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any

import rfc8785

ENTRY_FIELDS = (
    "index",
    "at",
    "request_id",
    "organization",
    "client",
    "action",
    "resource_type",
    "resource_id",
    "agreements",
    "purpose",
    "decision",
    "rules",
    "reasons",
    "counts",
    "outcome",
    "detail",
)
JSON_FIELDS = frozenset({"agreements", "rules", "reasons", "counts"})
EXPORT_COLUMNS = (*ENTRY_FIELDS, "leaf_hash")

_ENTRY_START = b'{"action":'  # "action" sorts first among ENTRY_FIELDS
_REDACTED_START = b'{"index":'
_SUFFIX_START = b',"leaf_hash":"'
_SUFFIX_LEN = len(_SUFFIX_START) + 44 + 2  # base64 of 32 bytes, then '"}'
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "'")


MAX_SAFE_INTEGER = 2**53 - 1  # RFC 8785 (I-JSON): integers beyond cannot be exact numbers


def _plain(value: Any) -> bool:
    """Whether ``value`` holds only what :func:`json.dumps` (sorted, compact, UTF-8) writes
    exactly as RFC 8785 does: null, booleans, safe integers, strings, lists, and objects whose
    keys sort the same by code point as by UTF-16 code unit (none at U+E000 or above)."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return bool(-MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER)
    if t is dict:
        return all(
            type(k) is str and (k.isascii() or max(k) < "\ue000") and _plain(v)
            for k, v in value.items()
        )
    if t is list or t is tuple:
        return all(_plain(v) for v in value)
    return False  # floats (ECMAScript number form) and anything else: the reference decides


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical bytes of a JSON value. Raises ValueError for what JCS cannot
    represent (non-finite or unsafe numbers, non-string keys, lone surrogates).

    Values without floats are written by the standard library's C encoder, which gives the same
    bytes for them (a property test checks this against the ``rfc8785`` package) several times
    faster; everything else goes to the ``rfc8785`` package itself.
    """
    if _plain(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return rfc8785.dumps(value)


def canonical_bytes(entry: Mapping[str, Any]) -> bytes:
    """The bytes a leaf hashes: the entry's fields (missing ones null) as canonical JSON."""
    return canonical_json({k: entry.get(k) for k in ENTRY_FIELDS})


def _json_text(value: Any) -> str:
    return canonical_json(value).decode()


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


def unb64(text: str | bytes, length: int | None = 32) -> bytes:
    """Strict standard base64 (RFC 4648 section 4); ``length`` bytes unless None."""
    raw = text.encode() if isinstance(text, str) else text
    try:
        data = binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc
    if length is not None and len(data) != length:
        raise ValueError(f"expected {length} bytes")
    return data


# --- NDJSON -------------------------------------------------------------------------------------


def ndjson_line(canonical: bytes, leaf: bytes) -> bytes:
    """An export line: the canonical entry with its leaf hash appended as the last key."""
    return canonical[:-1] + _SUFFIX_START + binascii.b2a_base64(leaf, newline=False) + b'"}\n'


def ndjson_withheld(index: int, leaf: bytes) -> bytes:
    """The line of an event an export filter left out: its index and leaf hash only."""
    return b'{"index":%d,"leaf_hash":"%s"}\n' % (index, binascii.b2a_base64(leaf, newline=False))


def split_ndjson_line(line: bytes) -> tuple[bytes | None, bytes]:
    """Return (canonical entry bytes, or None for a withheld event; the stated leaf hash)."""
    line = line.rstrip(b"\r\n")
    cut = len(line) - _SUFFIX_LEN
    if cut <= 0 or line[cut : cut + len(_SUFFIX_START)] != _SUFFIX_START or line[-2:] != b'"}':
        raise ValueError("not an audit export line")
    leaf = unb64(line[cut + len(_SUFFIX_START) : -2])
    if line.startswith(_ENTRY_START):
        return line[:cut] + b"}", leaf
    if line.startswith(_REDACTED_START) and line[len(_REDACTED_START) : cut].isdigit():
        return None, leaf
    raise ValueError("not an audit export line")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a member name occurs twice")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_ndjson_line(line: bytes) -> tuple[dict[str, Any] | None, bytes, int]:
    """An export line in *any* JSON serialization (spacing, member order, escapes, number
    forms): (the entry, or None for a withheld event; the stated leaf hash; the index).
    Its leaf hash is that of ``canonical_bytes(entry)``: this is what a third party implements;
    :func:`split_ndjson_line` is the fast path for lines exactly as the service writes them."""
    try:
        obj = json.loads(line, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("leaf_hash"), str):
        raise ValueError("not an audit export line")
    leaf = unb64(obj.pop("leaf_hash"))
    index = obj.get("index")
    if type(index) is not int or index < 0:
        raise ValueError("the index is not a number")
    if set(obj) == {"index"}:
        return None, leaf, index
    if set(obj) != set(ENTRY_FIELDS):
        raise ValueError("the entry does not have exactly the fields of an audit event")
    return obj, leaf, index


def withheld_index(line: bytes) -> int:
    """The index of a withheld-event line (see :func:`ndjson_withheld`)."""
    line = line.rstrip(b"\r\n")
    return int(line[len(_REDACTED_START) : len(line) - _SUFFIX_LEN])


# --- CSV ----------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA) else text


def _uncell(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def csv_row(entry: Mapping[str, Any], leaf: bytes) -> list[str]:
    """The CSV cells of an event, in :data:`EXPORT_COLUMNS` order."""
    row: list[str] = []
    for name in ENTRY_FIELDS:
        value = entry.get(name)
        if name in JSON_FIELDS:
            row.append(_cell(_json_text(value)))
        elif value is None:
            row.append("")
        else:
            row.append(_cell(str(value)))
    row.append(b64(leaf))
    return row


def csv_withheld_row(index: int, leaf: bytes) -> list[str]:
    return [str(index), *([""] * (len(ENTRY_FIELDS) - 1)), b64(leaf)]


def parse_csv_row(row: Sequence[str]) -> tuple[dict[str, Any] | None, int, bytes]:
    """Return (the entry, or None for a withheld event; its index; the stated leaf hash)."""
    if len(row) != len(EXPORT_COLUMNS):
        raise ValueError(f"expected {len(EXPORT_COLUMNS)} columns, found {len(row)}")
    index_text = row[0]
    if not index_text.isdigit() or (len(index_text) > 1 and index_text[0] == "0"):
        raise ValueError("the index is not a number")
    index = int(index_text)
    leaf = unb64(row[-1])
    if row[ENTRY_FIELDS.index("action")] == "":
        if any(row[1:-1]):
            raise ValueError("a withheld event carries only its index and leaf hash")
        return None, index, leaf
    entry: dict[str, Any] = {"index": index}
    for name, text in zip(ENTRY_FIELDS[1:], row[1:-1], strict=True):
        if name in JSON_FIELDS:
            try:
                entry[name] = json.loads(_uncell(text))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{name} is not JSON") from exc
        else:
            entry[name] = _uncell(text) if text else None
    return entry, index, leaf


_SORTED_FIELDS = tuple(sorted(ENTRY_FIELDS))
_ENTRY_TEMPLATE = "{" + ",".join(f'"{name}":%s' for name in _SORTED_FIELDS) + "}"
# For each field in canonical (sorted) order: its CSV column, and whether it holds JSON text.
_CSV_PLAN = tuple(
    (ENTRY_FIELDS.index(name), name in JSON_FIELDS) for name in _SORTED_FIELDS if name != "index"
)
_INDEX_AT = _SORTED_FIELDS.index("index")
_ACTION_COLUMN = ENTRY_FIELDS.index("action")


def csv_canonical(row: Sequence[str]) -> tuple[bytes | None, bytes]:
    """The canonical entry bytes of a CSV row without a JSON round trip (None if withheld), and
    the stated leaf hash.

    The list and object cells already hold canonical JSON text and strings only need quoting, so
    the entry is assembled directly; a cell that is not in canonical form yields bytes that do not
    hash to the log's leaf, exactly as a change would. :func:`parse_csv_row` is the full parse.
    """
    if len(row) != len(EXPORT_COLUMNS):
        raise ValueError(f"expected {len(EXPORT_COLUMNS)} columns, found {len(row)}")
    leaf = unb64(row[-1])
    index = row[0]
    if not index.isdigit() or (len(index) > 1 and index[0] == "0"):
        raise ValueError("the index is not a number")
    if row[_ACTION_COLUMN] == "":
        return None, leaf
    values: list[str] = []
    for column, is_json in _CSV_PLAN:
        text = row[column]
        if text and text[0] == "'":
            text = text[1:]
        if is_json:
            values.append(text)
        elif text:
            values.append(encode_basestring(text))
        else:
            values.append("null")
    values.insert(_INDEX_AT, index)
    return (_ENTRY_TEMPLATE % tuple(values)).encode(), leaf
