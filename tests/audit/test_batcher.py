"""Group commit of read events: every waiter gets its own committed index, a failed batch fails
every waiter and writes nothing, and a lost connection is replaced without losing a batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select, text

from audit import merkle
from audit.batcher import AuditBatcher
from audit.models import AuditEvent, AuditHead
from audit.service import AuditRecord
from core.context import RequestContext
from core.db import make_engine, make_session_factory
from migrations.commands import upgrade
from tests.audit.helpers import all_leaves, principal
from tests.conftest import FreshDatabase


@pytest.fixture
def log_engine(fresh_databases: FreshDatabase) -> Iterator[Engine]:
    url = fresh_databases.url()
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def batcher(log_engine: Engine) -> Iterator[AuditBatcher]:
    b = AuditBatcher(make_session_factory(log_engine), log_engine)
    b.start()
    assert b.batching
    yield b
    b.stop()


def _ctx(i: int) -> RequestContext:
    return RequestContext(
        f"req-{i}", datetime(2026, 3, 2, tzinfo=UTC), principal("backbone", "dash")
    )


READ = AuditRecord(action="release.read", resource_type="release", resource_id="rel_1")


def _committed(engine: Engine) -> tuple[int, int, bytes]:
    with make_session_factory(engine)() as session:
        count = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        size, frontier = session.execute(select(AuditHead.size, AuditHead.frontier)).one()
        root = merkle.Frontier.from_bytes(size, frontier).root()
        assert root == merkle.root(all_leaves(session))
        return count, size, root


def test_concurrent_reads_get_distinct_committed_indexes(batcher, log_engine):
    async def many() -> list[int]:
        return list(
            await asyncio.gather(*(batcher.submit_async(_ctx(i), READ) for i in range(300)))
        )

    indexes = asyncio.run(many())
    assert sorted(indexes) == list(range(300))
    count, size, _ = _committed(log_engine)  # committed: a fresh session sees every event
    assert count == size == 300
    with make_session_factory(log_engine)() as session:
        ids = dict(session.execute(select(AuditEvent.idx, AuditEvent.request_id)).all())
    assert all(ids[idx] == f"req-{i}" for i, idx in enumerate(indexes))


def test_a_failed_batch_fails_every_waiter_and_writes_nothing(batcher, log_engine):
    bad = AuditRecord(action="release.read", outcome="no-such-outcome")

    async def mixed() -> list[object]:
        # Queued before the writer wakes, so they share one batch with the bad event.
        futures = [batcher.submit_async(_ctx(i), READ) for i in range(5)]
        futures.append(batcher.submit_async(_ctx(5), bad))
        return list(await asyncio.gather(*futures, return_exceptions=True))

    results = asyncio.run(mixed())
    failed = [r for r in results if isinstance(r, BaseException)]
    assert failed, "the batch holding the bad event must fail"
    assert all(isinstance(r, ValueError) for r in failed)
    count, size, _ = _committed(log_engine)
    assert count == size == 6 - len(failed)  # whatever batch the bad event was in left no row

    async def one() -> int:
        return await batcher.submit_async(_ctx(9), READ)

    assert asyncio.run(one()) == size  # the writer carries on


def test_the_synchronous_path_commits_before_returning(log_engine):
    b = AuditBatcher(make_session_factory(log_engine), log_engine, enabled=False)
    b.start()
    assert not b.batching
    assert b.submit(_ctx(0), READ).result() == 0
    assert _committed(log_engine)[0] == 1


@pytest.mark.postgres_only
def test_a_lost_connection_is_replaced_and_the_batch_retried(batcher, log_engine):
    async def one(i: int) -> int:
        return await batcher.submit_async(_ctx(i), READ)

    assert asyncio.run(one(0)) == 0
    conn = batcher._conn
    assert conn is not None
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    conn.rollback()
    with log_engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
    assert asyncio.run(one(1)) == 1
    assert _committed(log_engine)[0] == 2
