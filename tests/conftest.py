"""Test fixtures.

The suite runs against a database made by the real Alembic migrations: SQLite by default,
PostgreSQL when ``BACKBONE_TEST_DATABASE=postgres`` (each xdist worker gets its own database,
created and dropped around the run). The demo initiative, at a smaller size, is seeded and
committed once; every test then runs inside a transaction that is rolled back, and the app under
test joins that transaction through savepoints.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from core.db import make_engine
from core.keys import MasterKey
from core.settings import Settings
from migrations.commands import upgrade

BACKEND = os.environ.get("BACKBONE_TEST_DATABASE", "sqlite")
PG_ADMIN_URL = os.environ.get(
    "BACKBONE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("BACKBONE_TEST_REQUIRE_POSTGRES") == "1"
MASTER = MasterKey(bytes(range(32)))
BASE_URL = "http://127.0.0.1"
SMALL_BIRTHS = 260


def postgres_available() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def uses_database(item: pytest.Item) -> bool:
    """Whether a test reaches the backend under test: every database of the suite comes from
    ``fresh_databases`` (the settings, engine, app and client fixtures all depend on it)."""
    return "fresh_databases" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _heaviest_files_first(items)
    if BACKEND == "postgres":
        # A test that never opens the database under test (the pure policy and disclosure
        # engines, parsers, the architecture checks) proves the same on either backend: the
        # SQLite pass has run it, so the PostgreSQL pass leaves it out.
        pure = [item for item in items if not uses_database(item)]
        if pure:
            config.hook.pytest_deselected(items=pure)
            items[:] = [item for item in items if uses_database(item)]
        if not postgres_available():
            if REQUIRE_PG:
                raise pytest.UsageError(
                    f"PostgreSQL is required but not reachable at {PG_ADMIN_URL}"
                )
            skip = pytest.mark.skip(
                reason="PostgreSQL is not reachable; set BACKBONE_TEST_POSTGRES_URL"
            )
            for item in items:
                item.add_marker(skip)
    else:
        skip = pytest.mark.skip(
            reason="needs PostgreSQL (run with BACKBONE_TEST_DATABASE=postgres)"
        )
        for item in items:
            if "postgres_only" in item.keywords:
                item.add_marker(skip)


def _heaviest_files_first(items: list[pytest.Item]) -> None:
    """Files with the most ``slow`` or ``process`` tests first, the rest in their order.

    ``--dist loadfile`` hands each worker whole files in collection order; a file of minutes
    collected last (``tests/test_cli_commands.py`` sorts after every folder) left one worker
    running it alone at the end. Longest first is the classic remedy for that tail. The order is
    a pure function of the collected items, so every xdist worker collects the same one."""
    weight: dict[str, int] = {}
    first: dict[str, int] = {}
    for position, item in enumerate(items):
        path = str(item.path)
        first.setdefault(path, position)
        heavy = "slow" in item.keywords or "process" in item.keywords
        weight[path] = weight.get(path, 0) + int(heavy)
    items.sort(key=lambda item: (-weight[str(item.path)], first[str(item.path)]))


class FreshDatabase:
    """Makes empty databases on the backend under test, and drops them afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.created: list[str] = []

    def url(self) -> str:
        name = f"bb_{uuid.uuid4().hex[:12]}"
        if BACKEND == "postgres":
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            self.created.append(name)
            return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        return f"sqlite:///{self.tmp / (name + '.db')}"

    def drop_all(self) -> None:
        if not self.created:
            return
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def fresh_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshDatabase]:
    maker = FreshDatabase(tmp_path_factory.mktemp("db"))
    yield maker
    maker.drop_all()


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now = self.now + timedelta(**kwargs)


@pytest.fixture(scope="session")
def database_url(fresh_databases: FreshDatabase) -> str:
    url = fresh_databases.url()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Settings:
    data_dir = tmp_path_factory.mktemp("var")
    # No background follower or audit writer in tests: they would share the test's connection
    # across threads, or write outside the test's transaction.
    return Settings(
        env="test",
        data_dir=data_dir,
        database_url=database_url,
        log_json=False,
        auth_sync_seconds=0,
        purge_on_start=False,
        audit_checkpoint_interval_seconds=0,
        audit_read_group_commit=False,
        # Release padding is tested on its own (tests/indicators/test_disclosure_http.py).
        release_time_quantum=0,
        # Release jobs run in the test's process and transaction (a worker elsewhere could not
        # see it), and a release is answered when it is done, however loaded the machine: the
        # job path (202, polling, the queue) is tested on its own (tests/indicators/test_release_jobs.py).
        job_queue="in-process",
        job_isolation="thread",
        job_sweep_seconds=0,
        release_sync_seconds=600,
    )


@pytest.fixture(scope="session")
def demo_credentials(engine: Engine, settings: Settings) -> dict[str, dict[str, Any]]:
    """Seed the demo initiative (small) once, committed; return credentials by client id."""
    from demo.generator import generate
    from demo.seed import seed

    path = settings.data_dir / "demo-credentials.json"
    with sessionmaker(bind=engine)() as session:
        seed(session, MASTER, path, generate(births_per_year=SMALL_BIRTHS))
        session.commit()
    import json

    return {c["client_id"]: c for c in json.loads(path.read_text())["clients"]}


@pytest.fixture
def connection(engine: Engine, demo_credentials: dict[str, Any]) -> Iterator[Connection]:
    conn = engine.connect()
    trans = conn.begin()
    try:
        yield conn
    finally:
        trans.rollback()
        conn.close()


@pytest.fixture
def sessions(connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as s:
        yield s


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


@pytest.fixture
def app(settings: Settings, engine: Engine, sessions: sessionmaker[Session], clock: Clock) -> Any:
    return create_app(
        settings, engine=engine, sessions=sessions, master=MASTER, clock=clock, configure_logs=False
    )


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        yield c


class Api:
    """A thin helper over the test client: tokens by client id, authorized requests."""

    def __init__(self, client: TestClient, credentials: dict[str, dict[str, Any]]) -> None:
        self.client = client
        self.credentials = credentials
        self._tokens: dict[tuple[str, str | None], str] = {}

    def token(self, client_id: str, scope: str | None = None) -> str:
        key = (client_id, scope)
        if key not in self._tokens:
            cred = self.credentials[client_id]
            data = {"grant_type": "client_credentials"}
            if scope:
                data["scope"] = scope
            r = self.client.post(
                "/oauth/token", data=data, auth=(cred["client_id"], cred["client_secret"])
            )
            assert r.status_code == 200, r.text
            self._tokens[key] = r.json()["access_token"]
        return self._tokens[key]

    def headers(self, client_id: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client_id)}", **extra}

    def get(self, path: str, as_: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers(as_, **kw.pop("headers", {})), **kw)

    def post(self, path: str, as_: str, **kw: Any) -> Any:
        return self.client.post(path, headers=self.headers(as_, **kw.pop("headers", {})), **kw)

    def delete(self, path: str, as_: str, **kw: Any) -> Any:
        return self.client.delete(path, headers=self.headers(as_, **kw.pop("headers", {})), **kw)


@pytest.fixture
def api(client: TestClient, demo_credentials: dict[str, dict[str, Any]]) -> Api:
    return Api(client, demo_credentials)


@pytest.fixture
def api_with(
    settings: Settings,
    engine: Engine,
    sessions: sessionmaker[Session],
    clock: Clock,
    demo_credentials: dict[str, dict[str, Any]],
) -> Callable[..., AbstractContextManager[Api]]:
    """``with api_with(setting=value) as api``: the API over the test's transaction, with
    some settings changed."""

    @contextmanager
    def make(**changes: Any) -> Iterator[Api]:
        app = create_app(
            settings.model_copy(update=changes),
            engine=engine,
            sessions=sessions,
            master=MASTER,
            clock=clock,
            configure_logs=False,
        )
        with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
            yield Api(client, demo_credentials)

    return make


class LiveServer:
    """The app under test served by uvicorn on a free port, in a background thread."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("live server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app: Any) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server
