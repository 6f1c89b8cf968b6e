"""The job engine the service uses, chosen by ``BACKBONE_JOB_QUEUE``: in-process threads (the
SQLite default, :mod:`jobs.runner`) or procrastinate's queue in PostgreSQL (:mod:`jobs.queue`,
run by ``backbone worker``)."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from core.settings import Settings
from jobs.isolation import JobProcesses
from jobs.runner import InProcessRunner
from jobs.service import JobRuntime


class JobEngine:
    """Submits jobs: :meth:`submit` returns the job's future when it runs in this process,
    ``None`` when a worker takes it from the queue (its row then tells how it went)."""

    def __init__(self, settings: Settings, runtime: JobRuntime) -> None:
        self.in_process = settings.jobs_in_process
        self._settings = settings
        self._processes: JobProcesses | None = None
        self._database_url = settings.database_url
        self._runner = (
            InProcessRunner(runtime, settings.job_concurrency, settings.job_sweep_seconds)
            if self.in_process
            else None
        )
        self._app: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._runner is not None:
            if self._settings.job_isolation == "process" and self._processes is None:
                # Each job in a process that ends with it (see jobs.isolation).
                self._processes = JobProcesses(
                    self._settings, self._settings.job_concurrency, self._runner.runtime.master
                )
                self._runner.runtime = replace(self._runner.runtime, processes=self._processes)
            self._runner.start()

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()
        if self._processes is not None:
            processes, self._processes = self._processes, None
            processes.close()
        with self._lock:
            app, self._app = self._app, None
        if app is not None:
            app.close()

    def submit(self, job_id: str) -> Future[str | None] | None:
        if self._runner is not None:
            return self._runner.submit(job_id)
        from jobs import queue

        with self._lock:
            if self._app is None:
                # A small pool of its own, opened on first use: deferring is one short insert.
                app = queue.make_app(self._database_url, min_size=1, max_size=4)
                app.open()
                self._app = app
            app = self._app
        queue.defer(app, job_id)
        return None
