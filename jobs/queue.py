"""Release jobs on procrastinate, whose queue lives in PostgreSQL: any number of ``backbone
worker`` processes, on any machine that reaches the database, take jobs from it.

The queue's schema is applied by migration 0010. A job on the queue carries only Backbone's job
id; the task runs :func:`jobs.service.run_job`, the same code as the in-process runner. A task
whose attempt raised (a lost connection, say) is retried by procrastinate, a few seconds later,
up to :data:`jobs.service.MAX_ATTEMPTS` attempts; a job of a worker that died (no heartbeat for
:data:`STALLED_SECONDS`) is put back on the queue by a periodic task that every worker defers
once a minute. procrastinate's ``lock`` (the job id) keeps two workers from running one job at
once.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy.engine import make_url

from core.db import normalize_url
from jobs.service import MAX_ATTEMPTS, JobRuntime, execute

log = logging.getLogger("backbone.jobs")
QUEUE = "backbone-releases"
RELEASE_TASK = "backbone.release"
RETRY_STALLED_TASK = "backbone.retry_stalled"
STALLED_SECONDS = 60.0

_runtime: list[JobRuntime] = []


def configure(runtime: JobRuntime) -> None:
    """What this process's tasks run with (set by the worker before it takes jobs)."""
    _runtime[:] = [runtime]


def release(job_id: str) -> None:
    """The task: run Backbone's job ``job_id`` (in a thread of the worker)."""
    if not _runtime:
        raise RuntimeError("the job runtime is not configured in this worker")
    execute(_runtime[0], job_id)


async def retry_stalled(context: JobContext, timestamp: int) -> None:
    """Put the jobs of workers that stopped sending heartbeats back on the queue."""
    manager = context.app.job_manager
    for job in await manager.get_stalled_jobs(
        queue=QUEUE, task_name=RELEASE_TASK, seconds_since_heartbeat=STALLED_SECONDS
    ):
        log.warning("a release job's worker stopped; the job is queued again")
        await manager.retry_job(job)


def conninfo(database_url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL."""
    url = make_url(normalize_url(database_url)).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def make_app(database_url: str, **pool: Any) -> App:
    """A procrastinate application on the database, with Backbone's tasks."""
    app = App(connector=PsycopgConnector(conninfo=conninfo(database_url), **pool))
    app.task(
        name=RELEASE_TASK, queue=QUEUE, retry=RetryStrategy(max_attempts=MAX_ATTEMPTS - 1, wait=5)
    )(release)
    app.periodic(cron="* * * * *", periodic_id="retry-stalled")(
        app.task(
            name=RETRY_STALLED_TASK,
            queue=QUEUE,
            queueing_lock=RETRY_STALLED_TASK,
            pass_context=True,
        )(retry_stalled)
    )
    return app


def defer(app: App, job_id: str) -> None:
    """Put a job on the queue (once: a job already waiting there is not queued twice)."""
    with contextlib.suppress(AlreadyEnqueued):
        app.configure_task(RELEASE_TASK, lock=job_id, queueing_lock=job_id).defer(job_id=job_id)


def run_worker(app: App, runtime: JobRuntime, concurrency: int, *, wait: bool = True) -> None:
    """Take jobs until stopped (SIGINT, SIGTERM), or with ``wait=False`` until none is left."""
    configure(runtime)
    app.run_worker(
        queues=[QUEUE],
        concurrency=concurrency,
        wait=wait,
        name="backbone-worker",
        install_signal_handlers=wait,
    )
