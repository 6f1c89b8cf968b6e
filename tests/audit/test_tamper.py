"""Tampering with the stored log, or with an export, is detected by ``verify`` every time, at the
first bad entry.

A fresh database holds a log of N synthetic events with signed checkpoints at three sizes. An
attacker with database access drops the append-only triggers and then, at every position in turn
and each time in a transaction that is rolled back afterwards: changes a field, deletes a row,
swaps rows, inserts an event, and rewrites history with recomputed leaf hashes. The operator's
export of the result is verified offline against the signed checkpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.orm import sessionmaker
from typer.testing import CliRunner

from audit import checkpoints, export
from audit.canonical import canonical_bytes
from audit.errors import AuditIntegrityError
from audit.merkle import leaf_hash
from audit.models import AuditEvent
from audit.note import LogSigner, NoteError, open_checkpoint, signer_for
from audit.queries import EventFilter
from audit.service import entry_of
from audit.verify import Report, verify_export
from cli.audit import audit_app
from core.db import make_engine, make_session_factory
from core.keys import MasterKey
from migrations.commands import upgrade
from tests.audit.helpers import add_events, drop_append_only_triggers
from tests.conftest import MASTER

N = 40
SIZES = (12, 25, N)
POSITIONS = range(N)
SIGNER = signer_for(MASTER, "tamper.example/audit")
EVENTS = AuditEvent.__table__


@pytest.fixture(scope="module")
def log(fresh_databases) -> Engine:
    url = fresh_databases.url()
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    start = datetime(2026, 4, 1, tzinfo=UTC)
    with sessions() as s:
        made = 0
        for size in SIZES:
            add_events(s, size - made, seed=size, start=start + timedelta(hours=size))
            made = size
            checkpoints.create(s, SIGNER, start + timedelta(hours=size, minutes=1))
        s.commit()
    with engine.begin() as conn:
        drop_append_only_triggers(conn)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def signed(log) -> list:
    with make_session_factory(log)() as s:
        notes = [checkpoints.at_size(s, size).note for size in SIZES]
    return [open_checkpoint(note, SIGNER.verifier) for note in notes]


def _export(conn: Connection, path: Path, fmt: str = "ndjson") -> Path:
    sessions = sessionmaker(bind=conn, join_transaction_mode="create_savepoint")
    plan = export.ExportPlan(N, fmt, EventFilter())
    path.write_bytes(b"".join(export.stream(sessions, plan)))
    return path


def _tampered(
    log: Engine, tmp_path: Path, tamper: Callable[[Connection], None], fmt: str = "ndjson"
) -> Path:
    with log.connect() as conn, conn.begin() as tx:
        tamper(conn)
        path = _export(conn, tmp_path / f"export.{fmt}", fmt)
        tx.rollback()
    return path


def _check(report: Report, position: int, *kinds: str) -> None:
    assert not report.ok, report.as_dict()
    assert report.first_bad.position == position, report.as_dict()
    assert report.first_bad.kind in kinds, report.as_dict()


def _matched_below(p: int) -> int:
    """Where a rewrite of entry p is located: the largest checkpoint size not above p."""
    return max((s for s in (0, *SIZES) if s <= p), default=0)


def _row(conn: Connection, idx: int) -> dict:
    return dict(conn.execute(select(EVENTS).where(EVENTS.c.idx == idx)).mappings().one())


def _shift(conn: Connection, start: int, by: int) -> None:
    """Renumber events from ``start`` on (in two steps, so the primary key never collides)."""
    far = 1_000_000
    conn.execute(update(EVENTS).where(EVENTS.c.idx >= start).values(idx=EVENTS.c.idx + far))
    conn.execute(update(EVENTS).where(EVENTS.c.idx >= far).values(idx=EVENTS.c.idx - far + by))


def _rehash(conn: Connection, lo: int, hi: int | None = None) -> None:
    """Recompute the stored leaf hash of events [lo, hi) from their (altered) content."""
    s = make_session_factory(conn)()
    query = select(AuditEvent).where(AuditEvent.idx >= lo)
    if hi is not None:
        query = query.where(AuditEvent.idx < hi)
    for event in s.scalars(query):
        conn.execute(
            update(EVENTS)
            .where(EVENTS.c.idx == event.idx)
            .values(leaf_hash=leaf_hash(canonical_bytes(entry_of(event))))
        )
    s.close()


FIELD_CHANGES = (
    {"action": "nothing.happened"},
    {"outcome": "succeeded", "decision": "permit"},
    {"counts": {"rows": 0}},
    {"organization_id": "backbone"},
    {"detail": "edited"},
    {"agreements": []},
)


def _change(p: int) -> Callable[[Connection], None]:
    values = FIELD_CHANGES[p % len(FIELD_CHANGES)]

    def tamper(conn: Connection) -> None:
        before = _row(conn, p)
        if all(before[k] == v for k, v in values.items()):
            values2 = {"at": before["at"] + timedelta(seconds=1)}
            conn.execute(update(EVENTS).where(EVENTS.c.idx == p).values(**values2))
        else:
            conn.execute(update(EVENTS).where(EVENTS.c.idx == p).values(**values))

    return tamper


def test_the_untampered_export_verifies(log, signed, tmp_path):
    with log.connect() as conn:
        for fmt in ("ndjson", "csv"):
            report = verify_export(_export(conn, tmp_path / f"clean.{fmt}", fmt), signed)
            assert report.ok and report.entries == N, report.as_dict()
            assert [c.status for c in report.checkpoints] == ["matches"] * 3


@pytest.mark.parametrize("p", POSITIONS)
def test_a_changed_field_is_found_at_its_entry(log, signed, tmp_path, p):
    report = verify_export(_tampered(log, tmp_path, _change(p)), signed)
    _check(report, p, "content-changed")


@pytest.mark.parametrize("p", POSITIONS)
def test_a_changed_leaf_hash_is_found_at_its_entry(log, signed, tmp_path, p):
    def tamper(conn: Connection) -> None:
        conn.execute(update(EVENTS).where(EVENTS.c.idx == p).values(leaf_hash=b"\x07" * 32))

    _check(verify_export(_tampered(log, tmp_path, tamper), signed), p, "content-changed")


@pytest.mark.parametrize("p", POSITIONS)
def test_a_rewritten_history_is_located_between_checkpoints(log, signed, tmp_path, p):
    """The field is changed and its leaf hash recomputed: only the signed roots can tell."""

    def tamper(conn: Connection) -> None:
        _change(p)(conn)
        _rehash(conn, p, p + 1)

    report = verify_export(_tampered(log, tmp_path, tamper), signed)
    _check(report, _matched_below(p), "history-rewritten")
    bad = [c.size for c in report.checkpoints if c.status == "differs"]
    assert bad == [s for s in SIZES if s > p]


@pytest.mark.parametrize("p", POSITIONS)
def test_a_deleted_row_is_found(log, signed, tmp_path, p):
    def tamper(conn: Connection) -> None:
        conn.execute(EVENTS.delete().where(EVENTS.c.idx == p))

    report = verify_export(_tampered(log, tmp_path, tamper), signed)
    _check(report, p, "missing" if p < N - 1 else "truncated")


@pytest.mark.parametrize("p", POSITIONS)
def test_a_deleted_row_with_the_rest_renumbered_is_found(log, signed, tmp_path, p):
    def tamper(conn: Connection) -> None:
        conn.execute(EVENTS.delete().where(EVENTS.c.idx == p))
        _shift(conn, p + 1, -1)

    report = verify_export(_tampered(log, tmp_path, tamper), signed)
    _check(report, p, "deleted" if p < N - 1 else "truncated")


@pytest.mark.parametrize("p", POSITIONS)
def test_reordered_rows_are_found(log, signed, tmp_path, p):
    q = (p + 7) % N

    def tamper(conn: Connection) -> None:
        conn.execute(update(EVENTS).where(EVENTS.c.idx == p).values(idx=-1))
        conn.execute(update(EVENTS).where(EVENTS.c.idx == q).values(idx=p))
        conn.execute(update(EVENTS).where(EVENTS.c.idx == -1).values(idx=q))

    _check(verify_export(_tampered(log, tmp_path, tamper), signed), min(p, q), "content-changed")


@pytest.mark.parametrize("d", (1, 2, 3))
@pytest.mark.parametrize("p", range(0, N - 3, 3))
def test_two_swapped_rows_are_out_of_order(log, signed, tmp_path, p, d):
    """Two events exchanged in the database (within the window where a renumbering is
    recognized) are reported as out of order, not as a deletion."""
    q = p + d

    def tamper(conn: Connection) -> None:
        conn.execute(update(EVENTS).where(EVENTS.c.idx == p).values(idx=-1))
        conn.execute(update(EVENTS).where(EVENTS.c.idx == q).values(idx=p))
        conn.execute(update(EVENTS).where(EVENTS.c.idx == -1).values(idx=q))

    for fmt in ("ndjson", "csv"):
        report = verify_export(_tampered(log, tmp_path, tamper, fmt), signed)
        _check(report, p, "out-of-order")


def _fake(conn: Connection, p: int) -> None:
    """Insert a plausible event at p, hashed correctly, moving the rest up by one."""
    template = _row(conn, p)
    _shift(conn, p, 1)
    fake = {**template, "idx": p, "action": "agreement.approve", "request_id": "forged"}
    s = make_session_factory(conn)()
    event = AuditEvent(**{k: v for k, v in fake.items()})
    fake["leaf_hash"] = leaf_hash(canonical_bytes(entry_of(event)))
    s.close()
    conn.execute(EVENTS.insert().values(**fake))


@pytest.mark.parametrize("p", POSITIONS)
def test_an_inserted_event_is_found(log, signed, tmp_path, p):
    report = verify_export(_tampered(log, tmp_path, lambda conn: _fake(conn, p)), signed)
    if p < N - 1:
        _check(report, p, "inserted")
    else:  # the displaced last event falls outside the export: it looks like a rewrite of p
        _check(report, _matched_below(p), "history-rewritten")


@pytest.mark.parametrize("p", POSITIONS)
def test_an_inserted_event_with_history_rehashed_is_found(log, signed, tmp_path, p):
    def tamper(conn: Connection) -> None:
        _fake(conn, p)
        _rehash(conn, p + 1)

    report = verify_export(_tampered(log, tmp_path, tamper), signed)
    _check(report, _matched_below(p), "history-rewritten")


@pytest.mark.parametrize("p", [0, 13, N - 1])
def test_tampering_is_found_in_csv_exports_too(log, signed, tmp_path, p):
    report = verify_export(_tampered(log, tmp_path, _change(p), "csv"), signed)
    _check(report, p, "content-changed")

    def delete(conn: Connection) -> None:
        conn.execute(EVENTS.delete().where(EVENTS.c.idx == p))

    report = verify_export(_tampered(log, tmp_path, delete, "csv"), signed)
    _check(report, p, "missing" if p < N - 1 else "truncated")


# --- tampering with the export file itself ------------------------------------------------------


@pytest.fixture(scope="module")
def clean_lines(log, tmp_path_factory) -> list[bytes]:
    with log.connect() as conn:
        path = _export(conn, tmp_path_factory.mktemp("clean") / "clean.ndjson")
    return path.read_bytes().splitlines(keepends=True)


def _file(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "edited.ndjson"
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize("p", POSITIONS)
def test_edits_to_an_export_file_are_found(clean_lines, signed, tmp_path, p):
    lines = list(clean_lines)
    # One byte of the content.
    edited = lines[p].replace(b'"request_id":"req', b'"request_id":"REQ')
    assert edited != lines[p]
    report = verify_export(_file(tmp_path, [*lines[:p], edited, *lines[p + 1 :]]), signed)
    _check(report, p, "content-changed")
    # A dropped line.
    report = verify_export(_file(tmp_path, lines[:p] + lines[p + 1 :]), signed)
    _check(report, p, "missing" if p < N - 1 else "truncated")
    # A repeated line.
    report = verify_export(_file(tmp_path, [*lines[: p + 1], lines[p], *lines[p + 1 :]]), signed)
    _check(report, p + 1, "out-of-order")
    # Two lines swapped.
    q = (p + 5) % N
    swapped = list(lines)
    swapped[p], swapped[q] = swapped[q], swapped[p]
    _check(verify_export(_file(tmp_path, swapped), signed), min(p, q), "out-of-order")
    # Truncated after p.
    if p < N - 1:
        _check(verify_export(_file(tmp_path, lines[: p + 1]), signed[-1:]), p + 1, "truncated")
    # Garbage.
    report = verify_export(_file(tmp_path, [*lines[:p], b"not json\n", *lines[p + 1 :]]), signed)
    _check(report, p, "malformed")


def test_lines_beyond_the_checkpoints_are_not_verified(clean_lines, signed, tmp_path):
    report = verify_export(_file(tmp_path, clean_lines), signed[:2])
    _check(report, SIZES[1], "not-covered")
    assert [c.status for c in report.checkpoints] == ["matches", "matches"]


def test_forged_and_foreign_checkpoints_are_refused(signed):
    note = signed[-1].note
    other = LogSigner(MasterKey(bytes(32)).audit_signing_key(), SIGNER.origin)
    forged, _ = other.sign(N, signed[-1].root, datetime(2026, 4, 2, tzinfo=UTC))
    with pytest.raises(NoteError, match="not signed by this key"):
        open_checkpoint(forged, SIGNER.verifier)
    for bad in (
        note.replace(f"\n{N}\n", f"\n{N + 1}\n"),  # a different size under the same signature
        note.replace("time 2026", "time 2027"),  # even the time line is signed
    ):
        with pytest.raises(NoteError, match="does not verify"):
            open_checkpoint(bad, SIGNER.verifier)
    elsewhere = signer_for(MASTER, "other.example/audit")
    foreign, _ = elsewhere.sign(N, signed[-1].root, datetime(2026, 4, 2, tzinfo=UTC))
    with pytest.raises(NoteError, match="is for log"):
        open_checkpoint(foreign, SIGNER.verifier)
    for junk in ("", "hello\n", note.replace("\u2014", "-"), note[:-2]):
        with pytest.raises(NoteError):
            open_checkpoint(junk, SIGNER.verifier)


def test_the_command_line_reports_the_first_bad_entry(log, signed, tmp_path):
    path = _tampered(log, tmp_path, _change(17))
    key = tmp_path / "log.vkey"
    key.write_text(SIGNER.verifier.vkey() + "\n")
    args = ["verify", str(path), "--public-key", str(key)]
    for i, cp in enumerate(signed):
        (tmp_path / f"cp{i}").write_text(cp.note)
        args += ["--checkpoint", str(tmp_path / f"cp{i}")]
    runner = CliRunner()
    result = runner.invoke(audit_app, args)
    assert result.exit_code == 1, result.output
    assert "first bad entry at index 17 (content-changed)" in result.output
    result = runner.invoke(audit_app, [*args, "--json"])
    report = json.loads(result.output)
    assert report["first_bad_entry"]["position"] == 17 and not report["ok"]
    # A forged checkpoint and an unreadable key are refused with their own exit codes.
    forged = tmp_path / "forged"
    forged.write_text(signed[-1].note.replace("time 2026", "time 2027"))
    result = runner.invoke(
        audit_app, ["verify", str(path), "--public-key", str(key), "--checkpoint", str(forged)]
    )
    assert result.exit_code == 1 and "does not verify" in result.output
    (tmp_path / "bad.key").write_text("not a key")
    result = runner.invoke(
        audit_app,
        [
            "verify",
            str(path),
            "--public-key",
            str(tmp_path / "bad.key"),
            "--checkpoint",
            str(forged),
        ],
    )
    assert result.exit_code == 2
    result = runner.invoke(
        audit_app,
        [
            "verify",
            str(tmp_path / "missing"),
            "--public-key",
            str(key),
            "--checkpoint",
            str(forged),
        ],
    )
    assert result.exit_code == 2


def test_the_operator_cannot_export_a_tampered_log_with_a_fresh_signature(log, tmp_path):
    """After tampering, the service refuses to sign a new head (the log must have grown)."""
    with log.connect() as conn, conn.begin() as tx:
        conn.execute(text("DELETE FROM audit_events WHERE idx = 30"))
        s = make_session_factory(conn)()
        add_events(s, 1, seed=1234)
        with pytest.raises(AuditIntegrityError):
            checkpoints.create(s, SIGNER, datetime(2026, 4, 3, tzinfo=UTC))
        tx.rollback()
