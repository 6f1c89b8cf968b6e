"""Group commit for audit events of reads.

A read changes nothing but must leave a durable audit event before its answer is sent. Each
event takes the log's head lock until its transaction commits, and a durable commit costs a disk
flush (about 3.5 ms on the machines this was measured on), so one commit per read caps every
worker together at a few hundred reads per second. The batcher writes the events of concurrent
reads in one transaction, one flush for many, and releases each waiting request only after that
transaction has committed: no read is answered before its event is durable.

Only pure reads use it; every request with an effect writes its event in the transaction of
that effect, as before.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy.orm import Session

from audit.service import AuditRecord, record_many
from core.context import RequestContext

log = logging.getLogger("backbone.audit")


@dataclass
class _Pending:
    ctx: RequestContext
    rec: AuditRecord
    done: Future[int]


class AuditBatcher:
    def __init__(
        self, sessions: Callable[[], Session], window_seconds: float = 0.004, max_batch: int = 256
    ) -> None:
        self._sessions = sessions
        self._window = window_seconds
        self._max = max_batch
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def batching(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._window <= 0 or self._thread is not None:
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
        batching thread (window 0, as in tests), the event is written before this returns."""
        done: Future[int] = Future()
        if self._thread is None:
            self._write([_Pending(ctx, rec, done)])
        else:
            self._queue.put(_Pending(ctx, rec, done))
        return done

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            try:
                while len(batch) < self._max:
                    item = self._queue.get(timeout=self._window)
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
            except queue.Empty:
                pass
            self._write(batch)
            if stopping:
                return

    def _write(self, batch: list[_Pending]) -> None:
        try:
            with self._sessions() as session:
                indexes = [e.idx for e in record_many(session, [(p.ctx, p.rec) for p in batch])]
                session.commit()
        except Exception as exc:  # every waiting request fails: none is answered unaudited
            log.exception("could not write a batch of audit events")
            for p in batch:
                p.done.set_exception(exc)
            return
        for p, idx in zip(batch, indexes, strict=True):
            p.done.set_result(idx)
