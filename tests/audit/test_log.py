"""Writing the log: gapless indexes, leaf hashes that survive the database round trip, stored
subtree hashes, proofs from the store, checkpoints, and the triggers that refuse changes."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from audit import checkpoints, merkle
from audit.canonical import canonical_bytes
from audit.errors import AuditIntegrityError
from audit.models import STORED_LEVEL, AuditCheckpoint, AuditEvent, AuditHead, AuditNode
from audit.note import open_checkpoint, signer_for
from audit.proofs import StoredTree
from audit.service import AuditRecord, entry_of, format_time, record
from core.context import RequestContext
from core.db import make_engine, make_session_factory
from core.errors import InvalidInput
from migrations.commands import upgrade
from policy.model import Principal
from tests.audit.helpers import add_events, all_leaves, drop_append_only_triggers, principal
from tests.conftest import MASTER

SIGNER = signer_for(MASTER, "test.example/audit")


def _ctx(at: datetime | None = None, org: str = "district") -> RequestContext:
    return RequestContext(
        "req-test", at or datetime(2026, 3, 2, tzinfo=UTC), principal(org, f"{org}-sis")
    )


def test_indexes_are_gapless_and_the_head_tracks_the_tree(session):
    before = session.scalar(select(AuditHead.size))
    events = add_events(session, 40)
    assert [e.idx for e in events] == list(range(before, before + 40))
    leaves = all_leaves(session)
    size, frontier = session.execute(select(AuditHead.size, AuditHead.frontier)).one()
    assert size == len(leaves) == before + 40
    assert merkle.Frontier.from_bytes(size, frontier).root() == merkle.root(leaves)


def test_the_leaf_hash_is_the_hash_of_the_entry_as_stored(session):
    """Whatever goes in comes back byte-identical, so anyone can recompute the leaf later."""
    tricky = AuditRecord(
        action="submission.create",
        resource_type="dataset",
        resource_id="births\x00; DROP TABLE x; \ud800 ☃",  # NUL and a lone surrogate from a URL
        purpose="",
        counts={"rows": 12, "ratio": 0.1, "tiny": 1e-7, "big": 2**53 + 1, "flag": True},
        detail='naïve "quoted" \\ back\nslash, 日本語',
    )
    event = record(session, _ctx(), tricky)
    idx = event.idx
    session.expire_all()
    stored = session.get(AuditEvent, idx)
    assert stored.purpose is None  # empty strings are stored as null
    assert "\x00" not in stored.resource_id and "\ud800" not in stored.resource_id
    assert merkle.leaf_hash(canonical_bytes(entry_of(stored))) == stored.leaf_hash
    # RFC 8785 numbers are exact only within +-(2**53 - 1): a larger integer is logged as text.
    big = str(2**53 + 1)
    assert stored.counts == {"rows": 12, "ratio": 0.1, "tiny": 1e-7, "big": big, "flag": True}


def test_bad_events_are_refused_before_anything_is_written(session):
    size = session.scalar(select(AuditHead.size))
    with pytest.raises(ValueError):
        record(session, _ctx(), AuditRecord(action="x", outcome="maybe"))
    with pytest.raises(ValueError):
        record(session, _ctx(), AuditRecord(action=""))
    with pytest.raises(ValueError):
        record(session, _ctx(), AuditRecord(action="x", counts={"rate": math.nan}))
    assert session.scalar(select(AuditHead.size)) == size


def test_stored_subtrees_are_exactly_the_completed_perfect_subtrees(session):
    add_events(session, 600, seed=3)
    leaves = all_leaves(session)
    nodes = {(n.level, n.idx): n.hash for n in session.scalars(select(AuditNode))}
    expected = {
        (level, i)
        for level in range(STORED_LEVEL, len(leaves).bit_length())
        for i in range(len(leaves) >> level)
    }
    assert set(nodes) == expected
    for (level, i), h in nodes.items():
        assert h == merkle.root(leaves[i << level : (i + 1) << level])


def test_proofs_from_the_store_equal_the_rfc_proofs(session):
    add_events(session, 700, seed=5)
    leaves = all_leaves(session)
    n = len(leaves)
    tree = StoredTree(session)
    assert tree.size == n
    sizes = sorted({1, 2, 255, 256, 257, 511, 512, 513, n - 1, n})
    for size in sizes:
        assert tree.root(size) == merkle.root(leaves[:size])
        for index in sorted({0, size // 3, size // 2, size - 2, size - 1}):
            if 0 <= index < size:
                assert tree.inclusion_proof(index, size) == merkle.inclusion_proof(
                    leaves[:size], index
                )
        for old in sorted({1, size // 2, size - 1, size}):
            if 0 < old <= size:
                assert tree.consistency_proof(old, size) == merkle.consistency_proof(
                    leaves[:size], old
                )
    with pytest.raises(InvalidInput):
        tree.inclusion_proof(n, n)
    with pytest.raises(InvalidInput):
        tree.root(n + 1)
    with pytest.raises(InvalidInput):
        tree.consistency_proof(0, n)


def test_a_proof_on_a_large_log_reads_a_bounded_number_of_rows(session, monkeypatch):
    add_events(session, 1100, seed=9)
    tree = StoredTree(session)
    read: list[int] = []
    original = tree.leaf_hashes

    def counting(lo: int, hi: int) -> list[bytes]:
        read.append(hi - lo)
        return original(lo, hi)

    monkeypatch.setattr(tree, "leaf_hashes", counting)
    tree.inclusion_proof(3, tree.size)
    tree.consistency_proof(300, tree.size)
    # Never more than a few blocks of 2**STORED_LEVEL leaves, however large the log.
    assert sum(read) <= 4 * (1 << STORED_LEVEL)


def test_checkpoints_are_signed_made_only_when_the_log_grew_and_consistent(session):
    add_events(session, 30)
    now = datetime(2026, 3, 3, tzinfo=UTC)
    first = checkpoints.create(session, SIGNER, now)
    assert first is not None and first.tree_size == session.scalar(select(AuditHead.size))
    cp = open_checkpoint(first.note, SIGNER.verifier)
    assert (cp.size, cp.root, cp.time) == (first.tree_size, first.root_hash, now)
    assert first.root_hash == merkle.root(all_leaves(session))
    assert checkpoints.create(session, SIGNER, now + timedelta(hours=1)) is first
    add_events(session, 5, seed=11)
    second = checkpoints.create(session, SIGNER, now + timedelta(hours=2))
    assert second.tree_size == first.tree_size + 5
    assert checkpoints.latest(session) is second
    assert checkpoints.at_size(session, first.tree_size) is first
    proof = StoredTree(session).consistency_proof(first.tree_size, second.tree_size)
    assert merkle.verify_consistency(
        first.tree_size, second.tree_size, first.root_hash, second.root_hash, proof
    )


def _refused(session, statement: str) -> None:
    with pytest.raises(DBAPIError) as info, session.begin_nested():
        session.execute(text(statement))
    assert "append-only" in str(info.value)


def test_triggers_refuse_update_and_delete_on_every_log_table(session):
    add_events(session, 300, seed=13)
    checkpoints.create(session, SIGNER, datetime(2026, 3, 4, tzinfo=UTC))
    session.flush()
    for statement in (
        "UPDATE audit_events SET action = 'nothing.happened' WHERE idx = 0",
        "UPDATE audit_events SET leaf_hash = leaf_hash WHERE idx = 1",
        "DELETE FROM audit_events WHERE idx = 2",
        "DELETE FROM audit_events",
        "UPDATE audit_checkpoints SET tree_size = tree_size + 1",
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_nodes SET hash = hash",
        "DELETE FROM audit_nodes",
    ):
        _refused(session, statement)
    if session.get_bind().dialect.name == "postgresql":
        for table in ("audit_events", "audit_checkpoints", "audit_nodes"):
            _refused(session, f"TRUNCATE {table}")
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == session.scalar(
        select(AuditHead.size)
    )
    assert session.scalar(select(func.count()).select_from(AuditCheckpoint)) >= 1


def test_appends_still_work_with_the_triggers_in_place(session):
    before = session.scalar(select(func.count()).select_from(AuditEvent))
    add_events(session, 3)
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == before + 3


@pytest.fixture
def fresh_log(fresh_databases):
    """An empty, migrated database of our own, with 300 synthetic events."""
    url = fresh_databases.url()
    upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as s:
        add_events(s, 300, seed=21)
        s.commit()
    yield engine
    engine.dispose()


def test_checkpointing_refuses_to_sign_a_log_that_no_longer_extends_the_last_checkpoint(fresh_log):
    sessions = make_session_factory(fresh_log)
    with sessions() as s:
        assert checkpoints.create(s, SIGNER, datetime(2026, 3, 5, tzinfo=UTC)).tree_size == 300
        s.commit()
    for tamper in (
        "UPDATE audit_events SET leaf_hash = :h WHERE idx = 290",  # in the last, unstored block
        "UPDATE audit_nodes SET hash = :h WHERE level = 8 AND idx = 0",  # a stored subtree
        "DELETE FROM audit_events WHERE idx = 280",
    ):
        with fresh_log.connect() as conn, conn.begin() as tx:
            drop_append_only_triggers(conn)
            conn.execute(text(tamper), {"h": b"\x01" * 32})
            s = make_session_factory(conn)()
            add_events(s, 1, seed=99)  # the log grows, so a new checkpoint is due
            with pytest.raises(AuditIntegrityError):
                checkpoints.create(s, SIGNER, datetime(2026, 3, 6, tzinfo=UTC))
            tx.rollback()


def test_a_missing_event_in_the_middle_is_reported_not_proved_around(fresh_log):
    with fresh_log.connect() as conn, conn.begin() as tx:
        drop_append_only_triggers(conn)
        conn.execute(text("DELETE FROM audit_events WHERE idx = 5"))
        s = make_session_factory(conn)()
        with pytest.raises(AuditIntegrityError):
            StoredTree(s).inclusion_proof(4, 300)
        tx.rollback()


def test_a_missing_stored_subtree_is_recomputed_from_the_leaves(fresh_log):
    with fresh_log.connect() as conn, conn.begin() as tx:
        s = make_session_factory(conn)()
        leaves = all_leaves(s)
        drop_append_only_triggers(conn)
        conn.execute(text("DELETE FROM audit_nodes"))
        tree = StoredTree(s)
        assert tree.inclusion_proof(3, 300) == merkle.inclusion_proof(leaves, 3)
        assert tree.root(300) == merkle.root(leaves)
        tx.rollback()


def test_migration_0005_backfills_the_subtrees_of_an_existing_log(fresh_databases):
    """A log written before revision 0005 gets its stored subtrees computed by the migration."""
    url = fresh_databases.url()
    upgrade(url, "0001")
    engine = make_engine(url)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    empty: dict[str, Any] = {"agreements": [], "rules": [], "reasons": [], "counts": {}}
    entries = [
        {"index": i, "at": format_time(at), "action": "old", "outcome": "succeeded", **empty}
        for i in range(700)
    ]
    # The events' real leaf hashes: the service re-hashes the rows before it signs.
    leaves = [merkle.leaf_hash(canonical_bytes(e)) for e in entries]
    frontier = merkle.Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    events = sa.table(
        "audit_events",
        *(
            sa.column(c)
            for c in (
                "idx",
                "at",
                "action",
                "agreements",
                "rules",
                "reasons",
                "counts",
                "outcome",
                "leaf_hash",
            )
        ),
    )
    with engine.begin() as conn:
        conn.execute(
            events.insert(),
            [
                {"idx": i, "at": at if engine.dialect.name == "postgresql" else at.replace(tzinfo=None), "action": "old", "agreements": "[]", "rules": "[]",
                 "reasons": "[]", "counts": "{}", "outcome": "succeeded", "leaf_hash": leaf}
                for i, leaf in enumerate(leaves)
            ],
        )  # fmt: skip
        conn.execute(
            text("UPDATE audit_head SET size = :n, frontier = :f WHERE id = 1"),
            {"n": len(leaves), "f": frontier.to_bytes()},
        )
    upgrade(url)
    with make_session_factory(engine)() as s:
        nodes = {(n.level, n.idx): n.hash for n in s.scalars(select(AuditNode))}
        assert set(nodes) == {(8, 0), (8, 1), (9, 0)}
        assert nodes[(9, 0)] == merkle.root(leaves[:512])
        tree = StoredTree(s)
        assert tree.inclusion_proof(600, 700) == merkle.inclusion_proof(leaves, 600)
        cp = checkpoints.create(s, SIGNER, datetime(2026, 3, 7, tzinfo=UTC))
        assert cp.root_hash == merkle.root(leaves)
    engine.dispose()


def test_the_checkpoint_timer_signs_when_the_log_grew_and_survives_errors(
    sessions, session, caplog
):
    from audit.checkpoints import CheckpointTimer

    clock_value = datetime(2026, 3, 8, tzinfo=UTC)
    timer = CheckpointTimer(sessions, SIGNER, lambda: clock_value, interval=3600)
    add_events(session, 2, seed=31)
    session.commit()
    made = timer.tick()
    assert made is not None and made.tree_size == session.scalar(select(AuditHead.size))
    assert timer.tick().tree_size == made.tree_size  # nothing new: the same checkpoint
    broken = CheckpointTimer(
        lambda: (_ for _ in ()).throw(RuntimeError("db down")), SIGNER, lambda: clock_value, 1
    )
    assert broken.tick() is None
    assert "could not make an audit checkpoint" in caplog.text
    timer.start()
    timer.stop()
    with pytest.raises(ValueError):
        CheckpointTimer(sessions, SIGNER, lambda: clock_value, interval=0)


def test_reading_the_log_needs_an_auditor_or_a_partner_scope(session):
    from audit.queries import EventFilter, latest_checkpoint, list_events
    from core.errors import Forbidden, PolicyDenied

    nobody = RequestContext(
        "r", datetime(2026, 3, 9, tzinfo=UTC), principal("district", "district-dashboard")
    )
    with pytest.raises(Forbidden):
        latest_checkpoint(session, nobody, SIGNER)
    # audit:read held by a non-auditor organization is still denied by the policy engine.
    partner = RequestContext(
        "r",
        datetime(2026, 3, 9, tzinfo=UTC),
        Principal("x", "district", "partner", frozenset({"audit:read"})),
    )
    with pytest.raises(PolicyDenied):
        list_events(session, partner, EventFilter(), after=None, limit=10)
