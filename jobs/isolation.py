"""Release jobs in processes that end with them, so that a worker gives its memory back.

A release over millions of records takes hundreds of megabytes to gigabytes while it computes
(the records of its population, the joint cube, OpenDP's frames). Freed, that memory stays with
a long-lived process: polars' allocator and the C library keep their arenas, and a worker that
computed one large release held several gigabytes for good (issue 15). So each job runs in a
child process that exits when the job ends (``ProcessPoolExecutor`` with one task per child),
forked from a *forkserver* that has imported the computation's modules once: a job starts in
milliseconds, not in the seconds a fresh interpreter would take to import polars, SciPy and
OpenDP, and the child inherits no thread or database connection of the parent.

The job code is the same (:func:`jobs.service.run_job`); the child opens its own database
engine from the same settings. ``BACKBONE_JOB_ISOLATION=thread`` runs jobs in the calling
thread instead (the tests do: a child could not see a test's uncommitted transaction).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from multiprocessing import forkserver

from agreements.service import PolicyCache
from core.clock import utcnow
from core.db import make_engine, make_session_factory
from core.keys import MasterKey
from core.settings import Settings
from jobs.service import JobRuntime, run_job

# Imported once by the forkserver, so that each job's process starts with them loaded.
_PRELOAD = [
    "numpy",
    "polars",
    "scipy.sparse",
    "highspy",
    "jobs.service",
    "aggregation.releases",
    "disclosure.protection",
    "disclosure.joint",
]


class JobProcesses:
    """Runs jobs, ``concurrency`` at a time, each in a process of its own."""

    def __init__(self, settings: Settings, concurrency: int, master: MasterKey) -> None:
        self._settings = settings
        # The key the parent was given (it may not be the one its settings point to), handed
        # to each child through the pool's pipe, never through the environment or a file.
        self._master = master
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        self._pool = ProcessPoolExecutor(
            max_workers=concurrency, mp_context=context, max_tasks_per_child=1
        )
        # Started now, not at the first job: the worker's idle size includes it.
        forkserver.ensure_running()

    def run(self, job_id: str, stale: timedelta | None) -> str | None:
        """Run a job in a new process and return its outcome (see ``run_job``); an error of
        the job is raised here, as if it had run in this thread."""
        return self._pool.submit(
            _run_in_child, self._settings, self._master, job_id, stale
        ).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _run_in_child(
    settings: Settings, master: MasterKey, job_id: str, stale: timedelta | None
) -> str | None:
    engine = make_engine(settings.database_url)
    try:
        sessions = make_session_factory(engine)
        runtime = JobRuntime(sessions, master, PolicyCache(sessions), utcnow)
        return run_job(runtime, job_id, stale)
    finally:
        engine.dispose()
