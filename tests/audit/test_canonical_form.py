"""The canonical form of an audit event is RFC 8785 (JSON Canonicalization Scheme), so that an
export verifies however it was re-serialized, and a third party can re-implement the verifier
from the README with any JCS library."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import checkpoints, export
from audit.canonical import ENTRY_FIELDS, MAX_SAFE_INTEGER, canonical_bytes, canonical_json
from audit.note import open_checkpoint, signer_for
from audit.queries import EventFilter
from audit.service import AuditRecord, record
from audit.verify import verify_export
from core.context import RequestContext
from tests.audit.helpers import add_events
from tests.conftest import MASTER

SIGNER = signer_for(MASTER, "canonical.example/audit")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_the_canonical_form_is_rfc_8785(value: Any):
    """The fast path (the standard library's encoder for values without floats) and the
    reference implementation agree on every JSON value."""
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(ENTRY_FIELDS), json_values), st.booleans(), st.integers())
def test_a_re_serialized_entry_has_the_same_canonical_bytes(
    entry: dict[str, Any], ascii_only: bool, order: int
):
    names = sorted(entry, key=lambda k: hash((k, order)))
    text = json.dumps(
        {k: entry[k] for k in names}, ensure_ascii=ascii_only, indent=1 if order % 2 else None
    )
    assert canonical_bytes(json.loads(text)) == canonical_bytes(entry)


def _reserialize(line: bytes, number_forms: bool) -> bytes:
    """What a third-party tool might do to a line: other member order, spacing, escapes, and
    other spellings of the same numbers."""
    obj = json.loads(line)
    text = json.dumps(dict(reversed(list(obj.items()))), ensure_ascii=True, separators=(", ", ": "))
    if number_forms:
        text = text.replace('"epsilon": 1', '"epsilon": 1.0E0')
    return text.encode() + b"\n"


def _independent_leaf(line: bytes) -> bytes | None:
    """The README's recipe, written without any of the service's code."""
    obj = json.loads(line)
    stated = base64.b64decode(obj.pop("leaf_hash"))
    if set(obj) == {"index"}:
        return None
    assert hashlib.sha256(b"\x00" + rfc8785.dumps(obj)).digest() == stated
    return stated


def test_an_export_verifies_however_it_is_re_serialized(session, sessions, tmp_path: Path):
    add_events(session, 30, seed=12)
    ctx = RequestContext("req-canonical", datetime(2026, 6, 1, tzinfo=UTC), None)
    # Numbers whose text differs between JSON encoders: 1.0 is 1 in RFC 8785, 1e-07 is 1e-7.
    record(
        session,
        ctx,
        AuditRecord(action="release.create", counts={"epsilon": 1.0, "tiny": 1e-7, "big": 2**60}),
    )
    row = checkpoints.create(session, SIGNER, datetime(2026, 6, 1, 0, 1, tzinfo=UTC))
    session.flush()
    assert row is not None
    signed = [open_checkpoint(row.note, SIGNER.verifier)]
    plan = export.ExportPlan(row.tree_size, "ndjson", EventFilter())
    original = b"".join(export.stream(sessions, plan)).splitlines(keepends=True)
    assert b'"epsilon":1,' in original[-1] and b'"tiny":1e-7' in original[-1]

    for number_forms in (False, True):
        lines = [_reserialize(line, number_forms) for line in original]
        assert lines != original
        path = tmp_path / "reserialized.ndjson"
        path.write_bytes(b"".join(lines))
        report = verify_export(path, signed)
        assert report.ok, report.as_dict()
    assert all(_independent_leaf(line) is not None for line in original[-5:])
    assert all(_independent_leaf(line) is not None for line in lines[-5:])

    # A change is still a change, whatever the spacing.
    changed = list(lines)
    changed[-2] = changed[-2].replace(b'"outcome": "', b'"outcome": "x')
    path.write_bytes(b"".join(changed))
    report = verify_export(path, signed)
    assert not report.ok
    assert report.first_bad is not None
    assert (report.first_bad.position, report.first_bad.kind) == (
        len(lines) - 2,
        "content-changed",
    )
    # A line that is not an audit event at all is malformed.
    changed = list(lines)
    changed[3] = b'{"index": 3, "leaf_hash": "AA==", "extra": 1}\n'
    path.write_bytes(b"".join(changed))
    report = verify_export(path, signed)
    assert report.first_bad is not None and report.first_bad.kind in ("malformed", "out-of-order")
