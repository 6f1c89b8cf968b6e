"""Verifying an export offline: no database, no service, only the export, signed checkpoints and
the log's public key.

The first pass hashes every line as it streams by (NDJSON needs no JSON parsing: the canonical
entry is sliced out of the line) and computes the root at each checkpoint's size with a Merkle
frontier, in constant memory. If every checkpoint matches and every line's content hashes to the
leaf hash it states, the export is exactly the log the service signed. Otherwise a second pass
parses each line to say *where* it went wrong. The first bad entry is the smallest position at
which one of these holds:

``malformed``          the line is not an export line (or CSV row) at all.
``missing``            the line at position p holds event q > p: events p..q-1 were deleted.
``out-of-order``       the line at position p holds event q < p: events were reordered/duplicated;
                       or the entries at p and p+d are the logged events p+d and p (exchanged).
``inserted``           from position p on, entries carry the logged hashes of the events c places
                       earlier, renumbered: c events were inserted at p-c..p-1 (reported at p-c).
``deleted``            from position p on, entries carry the logged hashes of the events c places
                       later, renumbered: events p..p+c-1 were deleted and the rest renumbered.
``content-changed``    the entry at p does not hash to the leaf hash the log recorded for it: a
                       field was changed, or the row was moved to another index.
``truncated``          the export ends at n entries but a checkpoint covers more.
``history-rewritten``  every line is self-consistent but the tree differs from a signed root:
                       entries (and their leaf hashes) were rewritten. Offline, this is located to
                       the range between the largest checkpoint that still matches (or 0) and the
                       smallest that does not; pass older checkpoints to narrow it.

Lines beyond the largest checkpoint are reported as not covered (the export is not verified).
"""

from __future__ import annotations

import csv
import hashlib
import time
from binascii import b2a_base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.canonical import (
    EXPORT_COLUMNS,
    canonical_bytes,
    csv_canonical,
    load_ndjson_line,
    parse_csv_row,
    unb64,
)
from audit.merkle import fold, leaf_hash, verify_consistency, verify_inclusion
from audit.note import Checkpoint, NoteError, VerifierKey, open_checkpoint

_sha256 = hashlib.sha256
_SUFFIX_START = b',"leaf_hash":"'
_SUFFIX_LEN = len(_SUFFIX_START) + 44 + 2
_ENTRY_START = b'{"action":'
RENUMBERING_WINDOW = 3
MAX_FINDINGS = 20


@dataclass(frozen=True)
class Finding:
    position: int  # the index the entry at this place in the export should have
    kind: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class CheckpointResult:
    size: int
    status: str  # matches | differs | beyond-export
    time: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"tree_size": self.size, "status": self.status, "time": self.time}


@dataclass
class Report:
    entries: int = 0
    format: str = "ndjson"
    checkpoints: list[CheckpointResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    first_bad: Finding | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "format": self.format,
            "checkpoints": [c.as_dict() for c in self.checkpoints],
            "first_bad_entry": self.first_bad.as_dict() if self.first_bad else None,
            "findings": [f.as_dict() for f in self.findings],
            "seconds": round(self.seconds, 3),
        }


def detect_format(path: Path) -> str:
    with path.open("rb") as fh:
        start = fh.read(1)
    return "ndjson" if start in (b"{", b"") else "csv"


class _Tree:
    """A Merkle frontier that records its root at the requested sizes as leaves stream in."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.stack: list[bytes] = []
        self.n = 0
        self.wanted = sorted(set(sizes))
        self.next = 0
        self.roots: dict[int, bytes] = {}

    def add(self, leaf: bytes) -> None:
        stack = self.stack
        h, m = leaf, self.n
        while m & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            m >>= 1
        stack.append(h)
        self.n += 1
        if self.next < len(self.wanted) and self.wanted[self.next] == self.n:
            self.roots[self.n] = fold(stack)
            self.next += 1


def _pass_ndjson(path: Path, tree: _Tree, mismatched: list[int], malformed: list[int]) -> None:
    add = tree.add
    position = 0
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            cut = len(line) - _SUFFIX_LEN
            stated = line[cut + len(_SUFFIX_START) : -2]
            if (
                cut > 0
                and line.startswith(_ENTRY_START)
                and line[cut : cut + len(_SUFFIX_START)] == _SUFFIX_START
                and line[-2:] == b'"}'
            ):
                # The line as the service writes it: the canonical entry is sliced out.
                leaf = _sha256(b"\x00" + line[:cut] + b"}").digest()
                if b2a_base64(leaf, newline=False) == stated:
                    add(leaf)
                    position += 1
                    continue
            # Any other serialization of an export line (or a changed one): parse it and hash
            # the RFC 8785 form of its entry.
            try:
                entry, stated_leaf, _index = load_ndjson_line(line)
                leaf = stated_leaf if entry is None else leaf_hash(canonical_bytes(entry))
            except ValueError:
                malformed.append(position)
                leaf = _sha256(b"\x02" + line).digest()  # never a valid leaf: the root differs
            else:
                if leaf != stated_leaf:
                    mismatched.append(position)
            add(leaf)
            position += 1


def _csv_rows(path: Path) -> Iterator[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(header) != EXPORT_COLUMNS:
            raise ValueError("the CSV header is not that of an audit export")
        yield from reader


def _pass_csv(path: Path, tree: _Tree, mismatched: list[int], malformed: list[int]) -> None:
    for position, row in enumerate(_csv_rows(path)):
        try:
            entry, stated = csv_canonical(row)
            leaf = stated if entry is None else _sha256(b"\x00" + entry).digest()
        except ValueError:
            malformed.append(position)
            leaf = _sha256(b"\x02" + "\x1f".join(row).encode()).digest()
        else:
            if leaf != stated:
                mismatched.append(position)
        tree.add(leaf)


def _entries(
    path: Path, fmt: str
) -> Iterator[tuple[int, dict[str, Any] | None, int | None, bytes]]:
    """Second pass: (position, parsed entry or None, its index or None, stated leaf hash)."""
    if fmt == "csv":
        for position, row in enumerate(_csv_rows(path)):
            try:
                entry, index, stated = parse_csv_row(row)
            except ValueError:
                yield position, None, None, b""
                continue
            yield position, entry, index, stated
        return
    with path.open("rb") as fh:
        for position, raw in enumerate(fh):
            try:
                entry, stated, index = load_ndjson_line(raw.rstrip(b"\r\n"))
            except ValueError:
                yield position, None, None, b""
                continue
            yield position, entry, index, stated


def _renumbering(entry: dict[str, Any], stated: bytes) -> int | None:
    """The shift c for which this entry, renumbered back to index - c, hashes to ``stated``."""
    index = entry["index"]
    for c in (d for k in range(1, RENUMBERING_WINDOW + 1) for d in (k, -k)):
        if index - c >= 0 and leaf_hash(canonical_bytes({**entry, "index": index - c})) == stated:
            return c
    return None


def _content_finding(position: int, entry: dict[str, Any], stated: bytes) -> tuple[int, Finding]:
    c = _renumbering(entry, stated)
    if c is not None and c > 0:
        message = (
            f"entries from {position} on are the logged events {c} place(s) earlier, "
            f"renumbered: {c} event(s) inserted at {position - c}"
        )
        return position - c, Finding(position - c, "inserted", message)
    if c is not None and c < 0:
        message = (
            f"entries from {position} on are the logged events {-c} place(s) later, "
            f"renumbered: event(s) {position}-{position - c - 1} deleted"
        )
        return position, Finding(position, "deleted", message)
    message = "its content does not hash to the leaf hash logged for it (changed or moved)"
    return position, Finding(position, "content-changed", message)


def _index_findings(indexes: list[int | None]) -> list[tuple[int, Finding]]:
    """Gaps and disorder in the sequence of indexes, as (first bad position, finding).

    Gaps (deleted events) are reported each time and the count resumes after them; the first
    reordering or duplicate is reported and ends the analysis, since what follows it is shifted.
    """
    out: list[tuple[int, Finding]] = []
    later: dict[int, int] = {}  # index -> how many times it occurs
    for index in indexes:
        if index is not None:
            later[index] = later.get(index, 0) + 1
    seen: set[int] = set()
    expected = 0
    for position, index in enumerate(indexes):
        if index is None:
            out.append((position, Finding(position, "malformed", "not an audit export line")))
            expected += 1
            continue
        if index == expected:
            seen.add(index)
            expected += 1
            continue
        if index > expected and not later.get(expected):
            gap = f"event {expected}" if index == expected + 1 else f"events {expected}-{index - 1}"
            message = f"{gap} missing: the next entry is event {index}"
            out.append((expected, Finding(expected, "missing", message)))
            seen.add(index)
            expected = index + 1
            continue
        what = "again" if index in seen else "out of order"
        message = f"expected event {expected}, found event {index} {what}"
        out.append((position, Finding(position, "out-of-order", message)))
        break
    return out


def _diagnose(
    path: Path, fmt: str, mismatched: set[int], malformed: set[int]
) -> list[tuple[int, Finding]]:
    """Locate what is wrong, as (first bad position, finding) pairs."""
    indexes: list[int | None] = []
    content: list[tuple[int, Finding]] = []
    shifted = False  # once entries are found renumbered, the later mismatches are that shift
    # An entry that is the logged event d places later is a deletion only if the entry d places
    # on is shifted the same way; if that one is the event logged here, the two were exchanged.
    pending: tuple[int, int] | None = None  # (position of the "deleted" finding, d)
    for position, entry, index, stated in _entries(path, fmt):
        indexes.append(None if position in malformed else index)
        if pending is not None and position == pending[0] + pending[1]:
            first, d = pending
            pending = None
            if position in mismatched and entry is not None and _renumbering(entry, stated) == d:
                content = [pair for pair in content if pair[0] != first]
                message = (
                    f"entries {first} and {position} are the logged events {position} and "
                    f"{first}: they exchanged places"
                )
                content.append((first, Finding(first, "out-of-order", message)))
                shifted = False
                continue
        if position in mismatched and entry is not None and not shifted:
            found = _content_finding(position, entry, stated)
            shifted = found[1].kind in ("inserted", "deleted")
            if found[1].kind == "deleted":
                c = _renumbering(entry, stated)
                assert c is not None
                pending = (position, -c)
            if len(content) < MAX_FINDINGS:
                content.append(found)
    out = _index_findings(indexes) + content
    out.sort(key=lambda pair: pair[0])
    return out[:MAX_FINDINGS]


def verify_export(
    path: Path, checkpoints: Sequence[Checkpoint], *, fmt: str | None = None
) -> Report:
    """Verify the export at ``path`` against already signature-checked ``checkpoints``."""
    started = time.perf_counter()
    fmt = fmt or detect_format(path)
    report = Report(format=fmt)
    if not checkpoints:
        raise ValueError("at least one checkpoint is needed")
    tree = _Tree([c.size for c in checkpoints])
    mismatched: list[int] = []
    malformed: list[int] = []
    if fmt == "csv":
        try:
            _pass_csv(path, tree, mismatched, malformed)
        except ValueError as exc:  # not an audit CSV at all
            report.first_bad = Finding(0, "malformed", str(exc))
            report.findings = [report.first_bad]
            report.seconds = time.perf_counter() - started
            return report
    else:
        _pass_ndjson(path, tree, mismatched, malformed)
    n = report.entries = tree.n
    matched_below: list[int] = []
    for cp in sorted(checkpoints, key=lambda c: c.size):
        stamp = cp.time.isoformat() if cp.time else None
        if cp.size > n:
            report.checkpoints.append(CheckpointResult(cp.size, "beyond-export", stamp))
            continue
        ok = tree.roots[cp.size] == cp.root
        report.checkpoints.append(CheckpointResult(cp.size, "matches" if ok else "differs", stamp))
        if ok:
            matched_below.append(cp.size)
    largest = max(c.size for c in checkpoints)
    differs = [c.size for c in report.checkpoints if c.status == "differs"]
    located: list[tuple[int, Finding]] = []
    if mismatched or malformed or differs or n != largest:
        located = _diagnose(path, fmt, set(mismatched), set(malformed))
    # A difference from a signed root that no entry explains: the history was rewritten.
    if differs and not any(position < differs[0] for position, _ in located):
        s = differs[0]
        a = max((m for m in matched_below if m < s), default=0)
        located.append(
            (
                a,
                Finding(
                    a,
                    "history-rewritten",
                    f"entries {a}-{s - 1} hash to a different tree than the checkpoint of size "
                    f"{s} signed: at least one was rewritten together with its leaf hash",
                ),
            )
        )
    if n < largest:
        located.append(
            (
                n,
                Finding(
                    n,
                    "truncated",
                    f"the export ends after {n} entries; a checkpoint covers {largest}",
                ),
            )
        )
    elif n > largest:
        located.append(
            (
                largest,
                Finding(
                    largest,
                    "not-covered",
                    f"entries {largest}-{n - 1} are not covered by any checkpoint given",
                ),
            )
        )
    located.sort(key=lambda pair: pair[0])
    report.findings = [f for _, f in located]
    report.first_bad = located[0][1] if located else None
    report.seconds = time.perf_counter() - started
    return report


# --- proofs fetched from the API -------------------------------------------------------------


def _signed(
    doc: Any, size: int, key: VerifierKey, saved: Sequence[Checkpoint]
) -> Checkpoint | None:
    """The checkpoint of ``size``: the one in the document (if its signature verifies) or a saved
    one. Raises NoteError when the document carries a checkpoint that does not verify."""
    if isinstance(doc, dict) and isinstance(doc.get("note"), str):
        cp = open_checkpoint(doc["note"], key)
        if cp.size == size:
            return cp
    return next((c for c in saved if c.size == size), None)


def verify_proof(
    doc: dict[str, Any], key: VerifierKey, saved: Sequence[Checkpoint] = ()
) -> tuple[bool, str]:
    """Check an inclusion or consistency proof document of ``/v1/audit/proofs/*`` offline.

    An inclusion proof is checked from the entry up: the entry hashes to the leaf, the leaf and
    path hash to the root, and the root is the one a checkpoint signed with ``key``. Checkpoints
    saved earlier (``saved``, signatures already checked) can stand in for those in the document.
    """
    try:
        proof = [unb64(h) for h in doc["proof"]]
        if "index" in doc:
            index, size = int(doc["index"]), int(doc["tree_size"])
            leaf = unb64(doc["leaf_hash"])
            entry = doc.get("entry")
            if entry is not None:
                if entry.get("index") != index:
                    return False, f"the entry is event {entry.get('index')}, not {index}"
                if leaf_hash(canonical_bytes(entry)) != leaf:
                    return False, "the entry does not hash to the leaf hash"
            cp = _signed(doc.get("checkpoint"), size, key, saved)
            if cp is None:
                return False, f"no signed checkpoint of tree size {size} to check against"
            if not verify_inclusion(index, size, leaf, proof, cp.root):
                return False, f"event {index} is NOT in the tree of size {size} that was signed"
            return True, f"event {index} is in the log: included in the signed tree of size {size}"
        first, second = int(doc["first"]), int(doc["second"])
        old = _signed(doc.get("first_checkpoint"), first, key, saved)
        new = _signed(doc.get("checkpoint"), second, key, saved)
        if old is None or new is None:
            missing = first if old is None else second
            return False, f"no signed checkpoint of tree size {missing} to check against"
        if not verify_consistency(first, second, old.root, new.root, proof):
            return False, f"the tree of size {second} does NOT extend the tree of size {first}"
        return True, f"the signed tree of size {second} extends the signed tree of size {first}"
    except NoteError as exc:
        return False, f"a checkpoint in the document does not verify: {exc}"
    except (KeyError, TypeError, ValueError) as exc:
        return False, f"not a proof document: {exc}"
