"""Group commit for audit events of reads.

A read changes nothing but must leave a durable audit event before its answer is sent. Each
event takes the log's head lock until its transaction commits, and a durable commit costs a disk
flush and several round trips to the database, so one transaction per read caps every worker
together at a few hundred reads per second. The batcher writes the events of concurrent reads in
one transaction and releases each waiting request only after that transaction has committed: no
read is answered before its event is durable.

The batching is natural rather than timed: whatever queued up while one batch was being written
goes into the next at once, so a quiet service answers a read after one commit and a busy one
writes large batches. The writer keeps one connection of its own (no pool checkout, no ping per
batch; a broken connection is replaced and the batch retried once), and wakes each event loop
once per batch rather than once per event: on small virtual machines every cross-thread wake-up
costs as much as a database round trip.

Only pure reads use it; every request with an effect writes its event in the transaction of
that effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit.service import AuditRecord, record_many
from core.context import RequestContext

log = logging.getLogger("backbone.audit")


@dataclass(slots=True)
class _Pending:
    ctx: RequestContext
    rec: AuditRecord
    done: Future[int] | asyncio.Future[int]
    loop: asyncio.AbstractEventLoop | None


_Settled = tuple[asyncio.Future[int], int | BaseException]


def _settle(items: list[_Settled]) -> None:
    for fut, outcome in items:
        if fut.done():  # the request was cancelled (client went away)
            continue
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


class AuditBatcher:
    def __init__(
        self,
        sessions: Callable[[], Session],
        engine: Engine,
        enabled: bool = True,
        max_batch: int = 512,
    ) -> None:
        self._sessions = sessions
        self._engine = engine
        self._enabled = enabled
        self._max = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None

    @property
    def batching(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if not self._enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="audit-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def submit(self, ctx: RequestContext, rec: AuditRecord) -> Future[int]:
        """Queue an event; the future resolves to its index once it is committed. Without the
        batching thread (disabled, or not started as in most tests), the event is written
        before this returns."""
        done: Future[int] = Future()
        if self._thread is None:
            try:
                with self._sessions() as session:
                    idx = record_many(session, [(ctx, rec)])[0].idx
                    session.commit()
            except Exception as exc:
                done.set_exception(exc)
            else:
                done.set_result(idx)
        else:
            self._queue.put(_Pending(ctx, rec, done, None))
        return done

    def submit_async(self, ctx: RequestContext, rec: AuditRecord) -> asyncio.Future[int]:
        """Like :meth:`submit`, for a caller on an event loop with a running batcher: the
        returned future is settled on that loop, together with the rest of its batch."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        self._queue.put(_Pending(ctx, rec, done, loop))
        return done

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stopping = False
                while len(batch) < self._max:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                self._write(batch)
                if stopping:
                    return
        finally:
            self._close()

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._close()
            self._conn = self._engine.connect()
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken connection may fail; it is dropped anyway
                log.debug("closing the audit writer's connection failed", exc_info=True)
            self._conn = None

    def _commit(self, batch: list[_Pending]) -> list[int]:
        conn = self._connection()
        with conn.begin():
            events = record_many(conn, [(p.ctx, p.rec) for p in batch])
        return [e.idx for e in events]

    def _write(self, batch: list[_Pending]) -> None:
        outcomes: list[int] | BaseException
        try:
            try:
                outcomes = self._commit(batch)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # The kept connection went away (database restart, idle timeout): nothing was
                # committed with it, so the batch is retried once on a new connection.
                self._close()
                outcomes = self._commit(batch)
        except Exception as exc:  # every waiting request fails: none is answered unaudited
            log.exception("could not write a batch of audit events")
            self._close()
            outcomes = exc
        by_loop: defaultdict[asyncio.AbstractEventLoop, list[_Settled]] = defaultdict(list)
        for i, p in enumerate(batch):
            outcome = outcomes if isinstance(outcomes, BaseException) else outcomes[i]
            if p.loop is None:
                done = p.done
                assert isinstance(done, Future)
                if isinstance(outcome, BaseException):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
            else:
                assert isinstance(p.done, asyncio.Future)
                by_loop[p.loop].append((p.done, outcome))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                loop.call_soon_threadsafe(_settle, items)
