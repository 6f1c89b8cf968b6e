"""Release jobs run in processes that end with them (``BACKBONE_JOB_ISOLATION=process``), so
that the memory a release takes goes back to the system; the job itself is tested through
``backbone worker --once`` (tests/indicators/test_release_jobs.py), which runs this way."""

from __future__ import annotations

import os
import time

import pytest

from core.keys import MasterKey
from core.settings import Settings
from jobs.isolation import JobProcesses

pytestmark = pytest.mark.process


def test_each_job_gets_a_process_of_its_own_that_ends(tmp_path):
    settings = Settings(env="test", data_dir=tmp_path, job_isolation="process")
    processes = JobProcesses(settings, 1, MasterKey(bytes(32)))
    try:
        pool = processes._pool
        first = pool.submit(os.getpid).result(timeout=120)
        second = pool.submit(os.getpid).result(timeout=120)
    finally:
        processes.close()
    assert first != os.getpid() and second != os.getpid()
    # One task per process: the second ran in a new one, the first had ended.
    assert first != second
    deadline = time.monotonic() + 30
    while True:  # reaped by the pool once it has exited
        try:
            os.kill(first, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the first job's process is still there"
        time.sleep(0.05)


def test_the_tests_and_the_thread_setting_run_jobs_in_the_calling_process(settings):
    assert settings.job_isolation == "thread"
    assert Settings(env="test", data_dir=settings.data_dir).job_isolation == "process"
