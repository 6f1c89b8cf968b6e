"""The service notices tampering itself: it re-hashes the events since its last checkpoint from
their rows before it signs, ``/readyz`` reports an altered log, and ``backbone audit
self-check`` re-hashes the whole log.

The attacker edits rows and leaves their stored leaf hashes alone, so the Merkle tree (made of
the stored hashes) still matches: only re-hashing the rows shows the change.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, select, update

from audit import checkpoints
from audit.errors import AuditIntegrityError
from audit.integrity import self_check
from audit.models import AuditEvent, AuditHead
from audit.note import signer_for
from core.db import make_engine, make_session_factory
from migrations.commands import upgrade
from tests.audit.helpers import add_events, drop_append_only_triggers
from tests.conftest import MASTER, FreshDatabase

SIGNER = signer_for(MASTER, "self-check.example/audit")
EVENTS = AuditEvent.__table__
START = datetime(2026, 5, 1, tzinfo=UTC)
BACKBONE = Path(sys.executable).parent / "backbone"


def _edit(p: int) -> Callable[[Connection], None]:
    def tamper(conn: Connection) -> None:
        conn.execute(update(EVENTS).where(EVENTS.c.idx == p).values(detail="edited"))

    return tamper


def _swap(p: int) -> Callable[[Connection], None]:
    def tamper(conn: Connection) -> None:
        q = p + 1
        conn.execute(update(EVENTS).where(EVENTS.c.idx == p).values(idx=-1))
        conn.execute(update(EVENTS).where(EVENTS.c.idx == q).values(idx=p))
        conn.execute(update(EVENTS).where(EVENTS.c.idx == -1).values(idx=q))

    return tamper


def _delete(p: int) -> Callable[[Connection], None]:
    def tamper(conn: Connection) -> None:
        conn.execute(EVENTS.delete().where(EVENTS.c.idx == p))

    return tamper


@pytest.fixture(scope="module")
def log_url(fresh_databases: FreshDatabase) -> str:
    """A log of 30 events with a checkpoint at 20, and its append-only triggers dropped."""
    url = fresh_databases.url()
    upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as s:
        add_events(s, 20, seed=3, start=START)
        checkpoints.create(s, SIGNER, START + timedelta(hours=1))
        add_events(s, 10, seed=4, start=START + timedelta(hours=2))
        s.commit()
    with engine.begin() as conn:
        drop_append_only_triggers(conn)
    engine.dispose()
    return url


@pytest.mark.parametrize("tamper", [_edit(24), _swap(22), _delete(25), _edit(29)])
def test_a_checkpoint_is_not_signed_over_an_edited_row(log_url, tamper):
    """Edits were signed before; swaps and deletions were already refused (their gaps or
    stored hashes show in the tree); all are refused now."""
    engine = make_engine(log_url)
    try:
        with engine.connect() as conn, conn.begin() as tx:
            tamper(conn)
            session = make_session_factory(conn)()
            with pytest.raises(AuditIntegrityError):
                checkpoints.create(session, SIGNER, START + timedelta(hours=3))
            session.close()
            tx.rollback()
        with make_session_factory(engine)() as session:  # untouched, it signs
            assert checkpoints.create(session, SIGNER, START + timedelta(hours=3)) is not None
            session.rollback()
    finally:
        engine.dispose()


@pytest.mark.parametrize("tamper", [_edit(3), _swap(10), _delete(0), _edit(24)])
def test_self_check_re_hashes_the_whole_log(log_url, tamper):
    engine = make_engine(log_url)
    try:
        with make_session_factory(engine)() as session:
            report = self_check(session)
            assert report.ok, report.as_dict()
            assert (report.size, report.checkpoints) == (30, 1)
        with engine.connect() as conn, conn.begin() as tx:
            tamper(conn)
            session = make_session_factory(conn)()
            report = self_check(session)
            session.close()
            tx.rollback()
        assert not report.ok
        assert "event" in report.problems[0]
        assert "edited" not in " ".join(report.problems)  # indexes, never content
    finally:
        engine.dispose()


def test_the_self_check_command(fresh_databases: FreshDatabase, tmp_path: Path):
    url = fresh_databases.url()
    upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as s:
        add_events(s, 12, seed=5, start=START)
        checkpoints.create(s, SIGNER, START + timedelta(hours=1))
        s.commit()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")},
        "BACKBONE_DATABASE_URL": url,
        "BACKBONE_DATA_DIR": str(tmp_path),
    }

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BACKBONE), "audit", "self-check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    try:
        done = run()
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("OK: 12 events")
        with engine.begin() as conn:
            drop_append_only_triggers(conn)
            _edit(4)(conn)
        done = run()
        assert done.returncode == 1
        assert "event 4 does not hash" in done.stdout
        assert "Traceback" not in done.stderr
    finally:
        engine.dispose()


def test_readyz_reports_an_edited_log(client, connection, session):
    assert client.get("/readyz").status_code == 200
    add_events(session, 3, seed=9)
    session.commit()
    size = session.scalar(select(AuditHead.size))
    drop_append_only_triggers(connection)
    connection.execute(update(EVENTS).where(EVENTS.c.idx == size - 2).values(detail="edited"))
    r = client.get("/readyz")
    assert r.status_code == 503
    check = r.json()["checks"]["audit_log"]
    assert check.startswith("integrity check failed") and f"event {size - 2}" in check
    assert "edited" not in r.text
