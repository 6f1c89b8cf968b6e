"""``backbone worker``: runs release jobs (not to be confused with :mod:`cli.worker`, a process
of ``backbone serve --workers N``).

With PostgreSQL it is a procrastinate worker taking jobs from the queue in the database: run as
many as you like, on any machine that reaches it. With SQLite (or ``BACKBONE_JOB_QUEUE=
in-process``) there is no queue: ``backbone serve`` runs the jobs itself, and this command runs
the jobs left queued or abandoned (``--once``: those, then it exits).

Registered by ``cli/main.py`` as ``backbone worker``.
"""

from __future__ import annotations

import signal
import threading
from concurrent.futures import wait
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from jobs.service import JobRuntime


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(help="jobs computed at once (default: BACKBONE_JOB_CONCURRENCY)", min=1),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run the jobs waiting now, then exit (for cron).")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="serve this worker's Prometheus metrics (the releases it computed) on this port",
            min=1,
            max=65535,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="the address --metrics-port listens on")
    ] = "127.0.0.1",
) -> None:
    """Run release jobs until stopped (SIGINT, SIGTERM), or with --once until none is left."""
    from agreements.service import PolicyCache
    from api.logging import configure as configure_logging
    from cli.database import open_engine
    from core.clock import utcnow
    from core.db import make_session_factory
    from core.keys import load_master_key
    from core.settings import get_settings
    from jobs.isolation import JobProcesses
    from jobs.service import JobRuntime

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    master = load_master_key(settings)
    engine = open_engine()
    sessions = make_session_factory(engine)
    jobs = concurrency or settings.job_concurrency
    processes = (
        JobProcesses(settings, jobs, master) if settings.job_isolation == "process" else None
    )
    from api.metrics import REGISTRY, job_recorder

    runtime = JobRuntime(
        sessions, master, PolicyCache(sessions), utcnow, processes, job_recorder(sessions)
    )
    if metrics_port is not None:
        from prometheus_client import start_http_server

        # The releases this worker computes are counted here, not by the API that queued them.
        start_http_server(metrics_port, addr=metrics_host, registry=REGISTRY)
    try:
        if settings.jobs_in_process:
            _in_process(runtime, jobs, once, settings.job_sweep_seconds)
        else:
            from jobs import queue

            typer.echo(f"backbone worker: {jobs} job(s) at once from the queue in PostgreSQL")
            queue.run_worker(queue.make_app(settings.database_url), runtime, jobs, wait=not once)
    finally:
        if processes is not None:
            processes.close()
        engine.dispose()


def _in_process(runtime: JobRuntime, jobs: int, once: bool, sweep_seconds: float) -> None:
    from jobs.runner import InProcessRunner

    runner = InProcessRunner(runtime, jobs, sweep_seconds=0)
    runner.start()
    try:
        if once:
            futures = runner.resume()
            wait(futures)
            typer.echo(f"{len(futures)} job(s) run")
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda _s, _f: stop.set())
        typer.echo("backbone worker: running the jobs left queued or abandoned (SQLite)")
        while True:
            runner.resume()
            if stop.wait(sweep_seconds or 60):
                break
    finally:
        runner.stop()
