"""A dropped database connection (a PostgreSQL restart, a failover, a backend killed with
``pg_terminate_backend``) is the database being unavailable, not a server bug.

- The request in flight gets 503 ``database-unavailable`` with ``Retry-After`` (not 500).
- Reads, and submissions with an Idempotency-Key, are retried once on a fresh connection.
- A release computes with no database connection held, so a connection lost meanwhile does not
  lose the computation.

The service runs on its own engine and connection pool (not the suite's rolled-back test
transaction) over a database of its own. On PostgreSQL the connection is really killed; on
SQLite, where a connection cannot be killed from outside, the same faults are raised as the
driver would raise them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import aggregation.population as aggregation_population
import records.service as records_service
from api.app import create_app
from core.db import make_engine, make_session_factory
from core.settings import Settings
from migrations.commands import upgrade
from tests.conftest import BACKEND, BASE_URL, MASTER, PG_ADMIN_URL, SMALL_BIRTHS, FreshDatabase

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def database(
    fresh_databases: FreshDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, Any], Any]]:
    from demo.generator import generate
    from demo.seed import seed

    url = fresh_databases.url()
    upgrade(url)
    data_dir = tmp_path_factory.mktemp("faults")
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        seed(
            session,
            MASTER,
            data_dir / "demo-credentials.json",
            generate(births_per_year=SMALL_BIRTHS),
        )
        session.commit()
    engine.dispose()
    creds = json.loads((data_dir / "demo-credentials.json").read_text())
    yield url, {c["client_id"]: c for c in creds["clients"]}, data_dir


@pytest.fixture
def service(database: tuple[str, dict[str, Any], Any]) -> Iterator[tuple[TestClient, Engine]]:
    url, _creds, data_dir = database
    settings = Settings(
        env="test",
        data_dir=data_dir,
        database_url=url,
        log_json=False,
        auth_sync_seconds=0,
        purge_on_start=False,
        audit_checkpoint_interval_seconds=0,
        audit_read_group_commit=False,
        # A release is computed by a job in this process and answered when it is done, however
        # loaded the machine: what a connection lost during the computation costs is the point.
        job_queue="in-process",
        # In the test's process: the tests replace functions of the computation to inject faults.
        job_isolation="thread",
        job_sweep_seconds=0,
        release_sync_seconds=600,
    )
    engine = make_engine(url)
    app = create_app(settings, engine=engine, master=MASTER, configure_logs=False)
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        yield client, engine
    engine.dispose()


def _token(client: TestClient, creds: dict[str, Any], client_id: str) -> dict[str, str]:
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, creds[client_id]["client_secret"]),
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _lose_connection(session: Session) -> None:
    """Break the session's database connection the way a restart or failover does."""
    if session.bind is not None and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        raise AssertionError("the backend was not terminated")  # pragma: no cover
    raise OperationalError(
        "SELECT 1",
        {},
        ConnectionError("server closed the connection unexpectedly"),
        connection_invalidated=True,
    )


def _kill_all_backends(url: str) -> int:
    """Terminate every connection to the service's database (PostgreSQL), as a restart would."""
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                ).all()
            )
    finally:
        admin.dispose()


def _fail_first(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, session_arg: int = 0
) -> list[int]:
    """Make the first call of ``module.name`` lose its database connection."""
    real: Callable[..., Any] = getattr(module, name)
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            _lose_connection(args[session_arg])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return calls


def test_a_read_that_loses_its_connection_is_retried_once(service, database, monkeypatch):
    client, _engine = service
    headers = _token(client, database[1], "district-sis")
    calls = _fail_first(monkeypatch, records_service, "list_own")
    r = client.get("/v1/submissions", headers=headers)
    assert r.status_code == 200, r.text
    assert len(calls) == 2


def test_a_write_that_loses_its_connection_gets_503_with_retry_after(
    service, database, monkeypatch
):
    client, _engine = service
    headers = _token(client, database[1], "district-sis")
    r = client.get("/v1/submissions", headers=headers)
    assert r.status_code == 200
    submission = r.json()["items"][0]["id"]
    _fail_first(monkeypatch, records_service, "withdraw")
    r = client.delete(f"/v1/submissions/{submission}", headers=headers)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/database-unavailable"
    assert int(r.headers["retry-after"]) > 0
    assert r.json()["request_id"] == r.headers["x-request-id"]
    # Nothing was committed: the submission is still accepted, with no withdrawal scheduled.
    receipt = client.get(f"/v1/submissions/{submission}", headers=headers).json()
    assert (receipt["status"], receipt["withdrawal"]) == ("accepted", None)


def test_a_read_that_fails_twice_gets_503(service, database, monkeypatch):
    client, _engine = service
    headers = _token(client, database[1], "district-sis")

    def broken(session: Session, *args: Any, **kwargs: Any) -> Any:
        _lose_connection(session)

    monkeypatch.setattr(records_service, "list_own", broken)
    r = client.get("/v1/submissions", headers=headers)
    assert r.status_code == 503
    assert r.json()["type"] == "/problems/database-unavailable"
    assert "Retry-After" in r.headers


def test_a_keyed_submission_that_loses_its_connection_is_stored_once(
    service, database, monkeypatch
):
    client, _engine = service
    headers = _token(client, database[1], "district-sis")
    from demo.walkthrough import late_batch

    calls = _fail_first(monkeypatch, records_service, "store")
    body = late_batch(count=12, seed=99)
    r = client.post(
        "/v1/datasets/kindergarten_readiness/submissions?period=2025-26",
        content=body,
        headers={**headers, "Content-Type": "text/csv", "Idempotency-Key": "faults-1"},
    )
    assert r.status_code == 201, r.text
    assert len(calls) == 2
    again = client.post(
        "/v1/datasets/kindergarten_readiness/submissions?period=2025-26",
        content=body,
        headers={**headers, "Content-Type": "text/csv", "Idempotency-Key": "faults-1"},
    )
    assert again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == r.json()["id"]


def test_a_release_holds_no_connection_while_it_computes(service, database, monkeypatch):
    client, engine = service
    headers = _token(client, database[1], "backbone-manager")
    real = aggregation_population.protect_in_population
    seen: list[int] = []

    def computing(*args: Any, **kwargs: Any) -> Any:
        seen.append(engine.pool.checkedout())
        if engine.dialect.name == "postgresql":
            # The database restarts in the middle of the computation.
            _kill_all_backends(str(engine.url.render_as_string(hide_password=False)))
        return real(*args, **kwargs)

    monkeypatch.setattr(aggregation_population, "protect_in_population", computing)
    # Attendance: no other test of this module submits to that dataset, so the release is
    # audited with the seeded history only, and its agreement publishes without review.
    r = client.post(
        "/v1/indicators/chronic-absenteeism/releases",
        json={"dimensions": ["neighborhood"]},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    assert seen == [0]  # no pooled connection was checked out while it computed
    stored = client.get(f"/v1/releases/{r.json()['id']}", headers=headers)
    assert stored.status_code == 200


@pytest.mark.postgres_only
def test_a_postgresql_restart_costs_no_request(service, database):
    """Every pooled connection killed between requests: the next ones are served (the pool
    checks a connection before handing it out)."""
    client, _engine = service
    headers = _token(client, database[1], "district-sis")
    assert client.get("/v1/submissions", headers=headers).status_code == 200
    assert _kill_all_backends(database[0]) >= 1
    for _ in range(3):
        assert client.get("/v1/submissions", headers=headers).status_code == 200


def test_the_backend_under_test() -> None:
    assert BACKEND in ("sqlite", "postgres")
