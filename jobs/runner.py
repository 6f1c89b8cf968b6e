"""Release jobs run in the serving process: the embedded (SQLite) default, with no other server.

The job code is the same as on the queue (:func:`jobs.service.run_job`); only what calls it
differs. Here it is a pool of threads of the serving process (``BACKBONE_JOB_CONCURRENCY``):
the job rows are the durable record, so jobs left queued or abandoned by a process that stopped
are taken over at start and every ``BACKBONE_JOB_SWEEP_SECONDS`` (a running job writes its
progress as it goes; one not heard of for :data:`STALE` is taken to be abandoned).

procrastinate's in-memory connector was not used for this: it is its testing connector, keeps
the queue in one process's memory (lost at a restart, which the job rows already survive), and
would need an event loop thread of its own to run a worker; a thread pool over the job rows is
all the embedded database needs, and the work done is exactly the queue's.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

from core.periodic import Periodic
from jobs.service import JobRuntime, execute, pending

log = logging.getLogger("backbone.jobs")
STALE = timedelta(minutes=10)
RETRY_SECONDS = 5.0


class InProcessRunner:
    def __init__(self, runtime: JobRuntime, concurrency: int, sweep_seconds: float) -> None:
        self.runtime = runtime
        self._concurrency = concurrency
        self._sweep_seconds = sweep_seconds
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._futures: dict[str, Future[str | None]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._sweeper = Periodic("job-sweeper", self.resume, "could not take over release jobs")

    def start(self) -> None:
        with self._lock:
            if self._pool is None:
                self._stopping.clear()
                self._pool = ThreadPoolExecutor(
                    max_workers=self._concurrency, thread_name_prefix="backbone-job"
                )
        if self._sweep_seconds > 0:
            try:
                self.resume()
            except Exception:  # the database may not be ready yet: the next sweep tries again
                log.warning("could not take over release jobs", exc_info=True)
            self._sweeper.start(self._sweep_seconds)

    def stop(self) -> None:
        """Stop taking jobs; those running finish (a job cut short is taken over later)."""
        self._sweeper.stop()
        self._stopping.set()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, job_id: str) -> Future[str | None]:
        """Run a job (once at a time in this process); its future's result is its final state."""
        with self._lock:
            running = self._futures.get(job_id)
            if running is not None and not running.done():
                return running
            if self._pool is None:
                raise RuntimeError("the job runner is not started")
            future = self._pool.submit(self._run, job_id)
            self._futures[job_id] = future
            future.add_done_callback(lambda _f: self._forget(job_id, _f))
            return future

    def _forget(self, job_id: str, future: Future[str | None]) -> None:
        with self._lock:
            if self._futures.get(job_id) is future:
                del self._futures[job_id]

    def _run(self, job_id: str) -> str | None:
        while True:
            try:
                return execute(self.runtime, job_id, STALE)
            except Exception:
                log.warning("a release job failed; it will be tried again", exc_info=True)
                if self._stopping.wait(RETRY_SECONDS):
                    return None

    def resume(self) -> list[Future[str | None]]:
        """Take over the jobs left queued or abandoned."""
        with self.runtime.sessions() as session:
            ids = pending(session, self.runtime.clock(), STALE)
        return [self.submit(job_id) for job_id in ids]
