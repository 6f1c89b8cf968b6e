"""Releases as background jobs: 202 and a job to poll beyond the synchronous deadline, run
in-process on SQLite and by a procrastinate worker on PostgreSQL; the job resource's owner,
progress and problem; idempotent runs (a crash before the commit leaves nothing stored or
charged, a job after the release is stored charges nothing); ``backbone worker``.

These tests need jobs that run outside the request's transaction, as they do in service: they
use a database of their own, committed (the demo initiative, small), not the rolled-back one of
the other tests.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from aggregation import releases
from aggregation.models import Release
from agreements.service import PolicyCache
from api.metrics import REGISTRY, job_recorder
from core.clock import utcnow
from core.context import RequestContext
from core.db import make_engine, make_session_factory
from core.settings import Settings
from jobs import service
from jobs.models import FAILED, QUEUED, SUCCEEDED, Job
from migrations.commands import upgrade
from policy.model import Principal
from tests.conftest import BACKEND, BASE_URL, MASTER, SMALL_BIRTHS, Api, FreshDatabase

POSTGRES = BACKEND == "postgres"
BACKBONE = Path(sys.executable).parent / "backbone"
DP = "differential_privacy"


@dataclass
class Committed:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    credentials: dict[str, dict[str, Any]]
    data_dir: Path

    def runtime(self) -> service.JobRuntime:
        return service.JobRuntime(self.sessions, MASTER, PolicyCache(self.sessions), utcnow)

    def principal(self, client_id: str) -> Principal:
        from identity.models import Client

        with self.sessions() as session:
            client = session.get(Client, client_id)
            assert client is not None
            return Principal(
                client_id=client.id,
                organization_id=client.organization_id,
                organization_kind=client.organization.kind,
                scopes=frozenset(client.scopes.split()),
            )

    def queue(self, client_id: str, indicator: str, dims: list[str], method: str) -> str:
        """A job queued for a release request, as the API queues it (committed)."""
        ctx = RequestContext("req-test", utcnow(), self.principal(client_id))
        with self.sessions() as session:
            policy = PolicyCache(self.sessions).get(session)
            outcome = service.request_release(
                session, ctx, policy, indicator, releases.ReleaseRequest(tuple(dims), method)
            )
            assert not isinstance(outcome, Release), "the release is stored already"
            job, _created = outcome
            session.commit()
            return job.id

    def compute(self, client_id: str, indicator: str, dims: list[str], method: str) -> str:
        """The release computed and stored at once, as a synchronous request would (committed)."""
        ctx = RequestContext("req-test", utcnow(), self.principal(client_id))
        with self.sessions() as session:
            policy = PolicyCache(self.sessions).get(session)
            release, created = releases.create_release(
                session,
                ctx,
                MASTER,
                policy,
                indicator,
                releases.ReleaseRequest(tuple(dims), method),
            )
            assert created
            session.commit()
            return release.id

    def job(self, job_id: str) -> Job:
        with self.sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def releases_of(self, indicator: str) -> int:
        with self.sessions() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Release)
                    .where(Release.indicator_id == indicator)
                )
                or 0
            )


@pytest.fixture(scope="module")
def committed(
    fresh_databases: FreshDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Committed]:
    from demo.generator import generate
    from demo.seed import seed
    from identity import service as identity

    url = fresh_databases.url()
    upgrade(url)
    data_dir = tmp_path_factory.mktemp("jobs-var")
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    path = data_dir / "demo-credentials.json"
    with sessions() as session:
        seed(session, MASTER, path, generate(births_per_year=SMALL_BIRTHS))
        session.commit()
    credentials = {c["client_id"]: c for c in json.loads(path.read_text())["clients"]}
    admin = RequestContext("req-test", utcnow())
    with sessions() as session:
        # Another organization that may request releases, and a second client of the backbone.
        identity.create_organization(
            session, admin, "other-backbone", "Another backbone", "backbone"
        )
        for client_id, org in (("other-manager", "other-backbone"), ("second-manager", "backbone")):
            issued = identity.create_client(
                session,
                admin,
                organization_id=org,
                name=client_id,
                role="backbone-manager",
                client_id=client_id,
            )
            credentials[client_id] = {"client_id": client_id, "client_secret": issued.secret}
        session.commit()
    yield Committed(url, engine, sessions, credentials, data_dir)
    engine.dispose()


def _settings(committed: Committed, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "data_dir": committed.data_dir,
        "database_url": committed.url,
        "log_json": False,
        "auth_sync_seconds": 0,
        "purge_on_start": False,
        "audit_checkpoint_interval_seconds": 0,
        "audit_read_group_commit": False,
        "release_time_quantum": 0,
        "release_sync_seconds": 0,
        "job_queue": "procrastinate" if POSTGRES else "in-process",
        "job_sweep_seconds": 0,
    }
    values.update(extra)
    return Settings(**values)


@pytest.fixture
def api(committed: Committed) -> Iterator[Api]:
    from api.app import create_app

    app = create_app(_settings(committed), master=MASTER, configure_logs=False)
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        yield Api(client, committed.credentials)


def _work(committed: Committed) -> None:
    """On PostgreSQL, a procrastinate worker takes what is on the queue, then stops; on SQLite
    the serving process runs the jobs itself."""
    if POSTGRES:
        from jobs import queue

        # As `backbone worker` does, the worker counts the releases it computes.
        runtime = replace(committed.runtime(), finished=job_recorder(committed.sessions))
        queue.run_worker(queue.make_app(committed.url), runtime, 1, wait=False)


def _releases_counted(method: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "backbone_releases_total", {"method": method, "outcome": outcome}
    )
    return value or 0.0


def _poll(api: Api, location: str, as_: str = "backbone-manager") -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        r = api.get(location, as_=as_)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["state"] in (SUCCEEDED, FAILED):
            assert "Retry-After" not in r.headers
            return body
        assert r.headers["Retry-After"] == "1"
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_a_release_beyond_the_deadline_is_a_job_polled_to_its_release(api, committed):
    dims = ["neighborhood"]
    computed = _releases_counted("suppression", "computed")
    stored = _releases_counted("suppression", "stored")
    r = api.post(
        "/v1/indicators/kindergarten-enrollment/releases",
        as_="backbone-manager",
        json={"dimensions": dims},
    )
    assert r.status_code == 202, r.text
    job = r.json()
    location = r.headers["Location"]
    assert location == f"/v1/jobs/{job['id']}"
    assert job["kind"] == "release" and job["indicator"] == "kindergarten-enrollment"
    assert job["dimensions"] == dims and job["state"] in ("queued", "running", "succeeded")
    assert 0 <= job["progress"]["fraction"] <= 1

    _work(committed)
    done = _poll(api, location)
    assert done["state"] == SUCCEEDED and done["problem"] is None
    assert done["progress"] == {"fraction": 1.0, "phase": "done"}
    assert done["attempts"] == 1 and done["finished_at"] >= done["started_at"]
    release = done["release"]
    assert release["indicator"] == "kindergarten-enrollment" and release["state"] == "published"
    assert release["parameters"]["min_cell_size"] >= 5

    # The release itself, and the same request again: the stored release, answered at once.
    assert api.get(f"/v1/releases/{release['id']}", as_="backbone-manager").status_code == 200
    again = api.post(
        "/v1/indicators/kindergarten-enrollment/releases",
        as_="backbone-manager",
        json={"dimensions": dims},
    )
    assert again.status_code == 200 and again.json()["id"] == release["id"]
    assert again.headers["Location"] == f"/v1/releases/{release['id']}"
    # Counted once where the job ran (answered 202, then computed), and the stored answer. The
    # job's row says succeeded a moment before the runner has counted it.
    assert release["method"] == "suppression"
    deadline = time.monotonic() + 30
    while _releases_counted("suppression", "computed") < computed + 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _releases_counted("suppression", "computed") == computed + 1
    assert _releases_counted("suppression", "stored") == stored + 1


def test_within_the_deadline_a_release_is_answered_at_once(committed):
    from api.app import create_app

    app = create_app(
        _settings(committed, job_queue="in-process", release_sync_seconds=300),
        master=MASTER,
        configure_logs=False,
    )
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        api = Api(client, committed.credentials)
        r = api.post(
            "/v1/indicators/kindergarten-enrollment/releases",
            as_="backbone-manager",
            json={"dimensions": ["school_year"]},
        )
        assert r.status_code == 201, r.text
        assert r.headers["Location"] == f"/v1/releases/{r.json()['id']}"
        assert r.json()["rows"]


def test_the_same_request_while_its_job_waits_is_that_job(committed):
    request = ("chronic-absenteeism", ["grade"], "suppression")
    first = committed.queue("backbone-manager", *request)
    assert committed.queue("backbone-manager", *request) == first
    # The job is the organization's: its other client asking the same gets the same job.
    assert committed.queue("second-manager", *request) == first
    # Meanwhile the same release is computed and stored (a synchronous request, say): the job
    # finds it, computes nothing and creates nothing.
    committed.compute("backbone-manager", *request)
    before = committed.releases_of("chronic-absenteeism")
    assert service.run_job(committed.runtime(), first) == SUCCEEDED
    assert committed.job(first).release_created is False
    assert committed.releases_of("chronic-absenteeism") == before
    # Once it has finished, the same request is answered by the stored release, not a job.
    with pytest.raises(AssertionError, match="stored already"):
        committed.queue("backbone-manager", *request)


def test_another_organizations_job_does_not_exist_for_it(api, committed):
    job_id = committed.queue(
        "backbone-manager", "chronic-absenteeism", ["school_year"], "suppression"
    )
    mine = api.get(f"/v1/jobs/{job_id}", as_="second-manager")  # the same organization
    assert mine.status_code == 200 and mine.json()["id"] == job_id
    theirs = api.get(f"/v1/jobs/{job_id}", as_="other-manager")
    missing = api.get("/v1/jobs/job_0000000000000000000000000", as_="other-manager")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.headers["content-type"] == "application/problem+json"
    strip = ("instance", "request_id")
    assert {k: v for k, v in theirs.json().items() if k not in strip} == {
        k: v for k, v in missing.json().items() if k not in strip
    }
    assert job_id not in theirs.text
    # Reading jobs needs the scope that requests releases.
    assert api.get(f"/v1/jobs/{job_id}", as_="backbone-dashboard").status_code == 403
    events = api.get(
        "/v1/audit/events", as_="county-auditor", params={"action": "job.read", "limit": 1000}
    ).json()["items"]
    assert any(
        e["outcome"] == "denied" and e["resource_id"] == job_id and e["client"] == "other-manager"
        for e in events
    )
    service.run_job(committed.runtime(), job_id)


def _spent(api: Api) -> dict[tuple[str, str, str], float]:
    return {
        (b["agreement"], b["dataset"], b["period"]): b["epsilon_spent"]
        for b in api.get("/v1/budgets", as_="backbone-manager").json()
    }


def test_a_crash_before_the_commit_leaves_nothing_charged_and_the_retry_charges_once(
    api, committed, monkeypatch
):
    job_id = committed.queue("backbone-manager", "kindergarten-readiness", ["neighborhood"], DP)
    before = _spent(api)
    runtime = committed.runtime()

    # A crash once the budget is charged, before the noise is drawn and the release stored.
    from disclosure import dp

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the worker died")

    with monkeypatch.context() as patched:
        patched.setattr(dp, "release", crash)
        with pytest.raises(RuntimeError):
            service.run_job(runtime, job_id)
    assert committed.job(job_id).state == QUEUED and committed.job(job_id).attempts == 1
    assert _spent(api) == before

    # A crash after the release is stored and charged, before the job's success is committed:
    # one transaction, so nothing of it remains either.
    with monkeypatch.context() as patched:
        patched.setattr(service, "complete", crash)
        with pytest.raises(RuntimeError):
            service.run_job(runtime, job_id)
    assert committed.job(job_id).release_id is None
    assert _spent(api) == before

    assert service.run_job(runtime, job_id) == SUCCEEDED
    job = committed.job(job_id)
    assert job.attempts == 3 and job.release_created is True
    after = _spent(api)
    charged = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    assert charged and set(charged.values()) == {1.0}  # once, in every period it covers

    # Run again (the engine delivered it twice): nothing to do, nothing charged.
    assert service.run_job(runtime, job_id) is None
    assert _spent(api) == after

    # A job whose release was stored and charged meanwhile (by a synchronous request, or by
    # an attempt that committed it) finds it and charges nothing.
    late = committed.queue("backbone-manager", "kindergarten-readiness", ["school_year"], DP)
    stored = committed.compute("backbone-manager", "kindergarten-readiness", ["school_year"], DP)
    charged_once = _spent(api)
    assert charged_once != after
    assert service.run_job(runtime, late) == SUCCEEDED
    assert committed.job(late).release_id == stored and committed.job(late).release_created is False
    assert _spent(api) == charged_once


def test_progress_goes_through_the_phases(committed, monkeypatch):
    seen: list[tuple[str, float, str]] = []
    original = service._reporter

    def spy(runtime: service.JobRuntime, job_id: str) -> Any:
        report = original(runtime, job_id)

        def recorded(phase: str, fraction: float) -> None:
            report(phase, fraction)
            seen.append((phase, fraction, committed.job(job_id).phase))

        return recorded

    monkeypatch.setattr(service, "_reporter", spy)
    suppressed = committed.queue(
        "backbone-manager",
        "kindergarten-enrollment",
        ["neighborhood", "school_year"],
        "suppression",
    )
    assert service.run_job(committed.runtime(), suppressed) == SUCCEEDED
    assert [p for p, _f, _stored in seen] == ["reading", "computing", "protecting", "storing"]
    assert all(p == stored for p, _f, stored in seen)  # each written as it is reached
    fractions = [f for _p, f, _s in seen]
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] < 1
    done = committed.job(suppressed)
    assert (done.phase, done.progress) == ("done", 1.0)

    seen.clear()
    private = committed.queue("backbone-manager", "kindergarten-readiness", ["race_ethnicity"], DP)
    assert service.run_job(committed.runtime(), private) == SUCCEEDED
    assert [p for p, _f, _s in seen] == ["reading", "computing"]


def test_a_failed_job_shows_its_problem(api, committed, monkeypatch):
    # Refused when it runs: its requester was disabled meanwhile (default deny). The refusal
    # is audited as a refused request is.
    job_id = committed.queue(
        "second-manager", "chronic-absenteeism", ["neighborhood"], "suppression"
    )
    from identity import service as identity

    with committed.sessions() as session:
        identity.disable_client(session, RequestContext("req-test", utcnow()), "second-manager")
        session.commit()
    assert service.run_job(committed.runtime(), job_id) == FAILED
    r = api.get(f"/v1/jobs/{job_id}", as_="backbone-manager")
    assert r.status_code == 200
    body = r.json()
    assert body["state"] == FAILED and body["release"] is None
    problem = body["problem"]
    assert problem["type"] == "/problems/forbidden" and problem["status"] == 403
    assert problem["detail"] == "The client that requested this job is disabled."
    events = api.get(
        "/v1/audit/events",
        as_="county-auditor",
        params={"action": "release.create", "limit": 1000},
    ).json()["items"]
    assert any(e["outcome"] == "denied" and e["resource_id"] == job_id for e in events)

    # Failing for no reason of the request's, every attempt: failed after the last one.
    broken = committed.queue(
        "backbone-manager", "chronic-absenteeism", ["grade", "school_year"], "suppression"
    )

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("unreachable")

    monkeypatch.setattr(service.releases, "create_release", crash)
    for _ in range(service.MAX_ATTEMPTS - 1):
        with pytest.raises(RuntimeError):
            service.run_job(committed.runtime(), broken)
    assert service.run_job(committed.runtime(), broken) == FAILED
    problem = api.get(f"/v1/jobs/{broken}", as_="backbone-manager").json()["problem"]
    assert problem["type"] == "/problems/release-job-failed" and problem["status"] == 500
    assert "unreachable" not in json.dumps(problem)
    assert api.client.get("/problems/release-job-failed").status_code == 200


def test_a_job_abandoned_by_a_stopped_process_is_taken_over(committed):
    from jobs.runner import STALE, InProcessRunner

    job_id = committed.queue(
        "backbone-manager", "low-birth-weight", ["neighborhood"], "suppression"
    )
    # Running, as a process that stopped left it; heard of recently, it is not taken over.
    with committed.sessions() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(state="running", updated_at=utcnow())
        )
        session.commit()
    runner = InProcessRunner(committed.runtime(), 1, sweep_seconds=0)
    runner.start()
    try:
        assert runner.resume() == []
        with committed.sessions() as session:
            session.execute(
                update(Job).where(Job.id == job_id).values(updated_at=utcnow() - STALE * 2)
            )
            session.commit()
        futures = runner.resume()
        assert len(futures) == 1 and futures[0].result(timeout=120) == SUCCEEDED
    finally:
        runner.stop()


def _waiting_for_a_worker(
    committed: Committed, client_id: str, indicator: str, dims: list[str], method: str
) -> str:
    """A job queued as the API queues it, and on PostgreSQL deferred to procrastinate's queue."""
    job_id = committed.queue(client_id, indicator, dims, method)
    if POSTGRES:
        from jobs import queue

        with queue.make_app(committed.url).open() as app:
            queue.defer(app, job_id)
    return job_id


def _worker_env(committed: Committed, data_dir: Path, **extra: str) -> dict[str, str]:
    """Only what `backbone worker` needs, as a service manager would give it."""
    return {
        "PATH": str(BACKBONE.parent),
        "BACKBONE_DATABASE_URL": committed.url,
        "BACKBONE_DATA_DIR": str(data_dir),
        "BACKBONE_MASTER_KEY": base64.urlsafe_b64encode(MASTER.raw).decode().rstrip("="),
        "BACKBONE_LOG_JSON": "false",
        **extra,
    }


@pytest.mark.process
@pytest.mark.slow
def test_backbone_worker_runs_the_waiting_jobs(committed, tmp_path):
    job_id = _waiting_for_a_worker(
        committed, "backbone-manager", "kindergarten-readiness", ["school_year"], "suppression"
    )
    done = subprocess.run(
        [str(BACKBONE), "worker", "--once"],
        env=_worker_env(committed, tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    job = committed.job(job_id)
    assert job.state == SUCCEEDED and job.release_id is not None


@pytest.mark.process
@pytest.mark.slow
def test_backbone_worker_serves_the_releases_it_computed_on_its_metrics_port(committed, tmp_path):
    job_id = _waiting_for_a_worker(
        committed, "backbone-manager", "low-birth-weight", ["birth_year"], "suppression"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(BACKBONE), "worker", "--metrics-port", str(port)],
        env=_worker_env(committed, tmp_path, BACKBONE_JOB_SWEEP_SECONDS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    computed = 'backbone_releases_total{method="suppression",outcome="computed"}'

    def scrape() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        except httpx.TransportError:
            return ""  # not listening yet

    try:
        # The job's row says succeeded a moment before the worker has counted it: wait for the
        # count itself.
        deadline = time.monotonic() + 120
        while f"{computed} 1.0" not in (text := scrape()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, [
                line for line in text.splitlines() if "backbone_releases_total" in line
            ]
            time.sleep(0.2)
        assert committed.job(job_id).state == SUCCEEDED
        assert 'backbone_release_duration_seconds_count{method="suppression"} 1.0' in text
        # Counted once: the job is not counted again while the worker goes on.
        time.sleep(1.5)
        assert f"{computed} 1.0" in scrape()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0


@pytest.mark.postgres_only
def test_the_queue_schema_comes_and_goes_with_migration_0010(fresh_databases: FreshDatabase):
    from sqlalchemy import inspect, text

    from migrations.commands import downgrade

    url = fresh_databases.url()
    upgrade(url)

    def engine_objects() -> tuple[set[str], int]:
        engine = make_engine(url)
        try:
            tables = {
                t for t in inspect(engine).get_table_names() if t.startswith("procrastinate_")
            }
            with engine.connect() as conn:
                routines = (
                    conn.execute(
                        text(
                            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%' "
                            "UNION ALL SELECT count(*) FROM pg_type WHERE typname LIKE 'procrastinate%'"
                        )
                    )
                    .scalars()
                    .all()
                )
            return tables, sum(routines)
        finally:
            engine.dispose()

    tables, routines = engine_objects()
    assert {"procrastinate_jobs", "procrastinate_workers", "procrastinate_events"} <= tables
    assert routines > 0
    downgrade(url, "0009")
    assert engine_objects() == (set(), 0)
    upgrade(url)
    assert engine_objects()[0] == tables


@pytest.mark.postgres_only
def test_a_worker_elsewhere_answers_within_the_deadline(committed):
    """The service queues the job in PostgreSQL and waits for its row; a procrastinate worker
    (here a thread, as it would be another process or machine) computes it in time."""
    import asyncio
    import contextlib
    import threading

    from api.app import create_app
    from jobs import queue

    worker_app = queue.make_app(committed.url)
    queue.configure(committed.runtime())
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def work() -> None:
        async with worker_app.open_async():
            task = asyncio.ensure_future(
                worker_app.run_worker_async(
                    queues=[queue.QUEUE], concurrency=1, install_signal_handlers=False
                )
            )
            await stop.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    thread = threading.Thread(target=loop.run_until_complete, args=(work(),), daemon=True)
    thread.start()
    try:
        app = create_app(
            _settings(committed, release_sync_seconds=120), master=MASTER, configure_logs=False
        )
        with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
            api = Api(client, committed.credentials)
            r = api.post(
                "/v1/indicators/kindergarten-readiness/releases",
                as_="backbone-manager",
                json={"dimensions": ["neighborhood"], "method": "suppression"},
            )
            assert r.status_code == 201, r.text
            assert r.json()["rows"] and r.headers["Location"].startswith("/v1/releases/")
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)
    assert not thread.is_alive()


def test_job_concurrency_computes_that_many_jobs_at_once(committed, monkeypatch):
    import threading

    from jobs.engine import JobEngine

    # Each job waits, before it computes, until the other one is running too.
    meeting = threading.Barrier(2, timeout=60)
    compute = service.releases.create_release

    def together(*args: Any, **kwargs: Any) -> Any:
        meeting.wait()
        return compute(*args, **kwargs)

    monkeypatch.setattr(service.releases, "create_release", together)
    jobs = [
        committed.queue(
            "backbone-manager", "kindergarten-readiness", ["race_ethnicity"], "suppression"
        ),
        committed.queue("backbone-manager", "readiness-after-prek", ["school_year"], "suppression"),
    ]
    engine = JobEngine(
        _settings(committed, job_queue="in-process", job_concurrency=2), committed.runtime()
    )
    engine.start()
    try:
        futures = [engine.submit(job_id) for job_id in jobs]
        assert all(f is not None and f.result(timeout=300) == SUCCEEDED for f in futures)
    finally:
        engine.stop()


def test_metrics_count_the_jobs_queued(committed):
    from api.app import create_app
    from tests.test_metrics import _parse, _value

    job_id = committed.queue(
        "backbone-manager",
        "kindergarten-readiness",
        ["race_ethnicity", "school_year"],
        "suppression",
    )
    app = create_app(_settings(committed), master=MASTER, configure_logs=False)
    with TestClient(app, base_url=BASE_URL, client=("127.0.0.1", 50000)) as local:

        def queued() -> float:
            r = local.get("/metrics")
            assert r.status_code == 200, r.text
            return _value(_parse(r.text), "backbone_jobs", state="queued")

        waiting = queued()
        assert waiting >= 1
        assert service.run_job(committed.runtime(), job_id) == SUCCEEDED
        assert queued() == waiting - 1


def test_a_failed_job_is_counted_failed_and_a_job_refusal_refused(committed):
    job_id = committed.queue(
        "backbone-manager", "low-birth-weight", ["race_ethnicity"], "suppression"
    )
    record = job_recorder(committed.sessions)
    for kind, outcome in ((service.JOB_FAILED, "failed"), ("forbidden", "refused")):
        with committed.sessions() as session:
            session.execute(
                update(Job).where(Job.id == job_id).values(state=FAILED, problem={"kind": kind})
            )
            session.commit()
        before = _releases_counted("suppression", outcome)
        record(job_id, FAILED, 0.5)
        assert _releases_counted("suppression", outcome) == before + 1
    # A job unknown to the database (purged) is not counted, and raises nothing.
    record("job_unknown", FAILED, 0.5)
