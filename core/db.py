"""Database engine, declarative base and session factory.

SQLite (embedded default) and PostgreSQL are both first-class. SQLite gets WAL, foreign keys,
a busy timeout and ``synchronous=FULL`` (an acknowledged submission must survive power loss), and
its driver's implicit transaction handling is replaced by explicit ``BEGIN`` so that savepoints
and transactional DDL behave as on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=15000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # A reader (see read_only) takes no lock: in WAL mode it waits for no writer.
            conn.exec_driver_sql("BEGIN")
            return
        # IMMEDIATE takes the write lock up front: a deferred transaction that later writes can
        # fail with SQLITE_BUSY without waiting, which would turn contention into errors.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


READ_ONLY = "backbone_read_only"


def read_only(session: Session) -> None:
    """Declare, before its first statement, that a session's transaction only reads: on SQLite
    it then waits for no writer (a long release holds the write lock while it reads its
    inputs), instead of taking the write lock as every other transaction does. Nothing on
    PostgreSQL, whose readers never wait for writers."""
    session.connection(execution_options={READ_ONLY: True})


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 15}, **kwargs
        )
        _sqlite_setup(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def make_session_factory(bind: Engine | Any) -> sessionmaker[Session]:
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=True)


def end_reads(session: Session) -> None:
    """End a transaction that has only read, so that its connection goes back to the pool (and,
    on SQLite, the write lock is released) during a long computation; the session begins a new
    transaction, on a fresh connection, at its next statement.

    Only for a unit of work that has written nothing yet: the transaction is committed, which
    for a read-only one changes nothing.
    """
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("end_reads would commit pending changes")
    session.commit()
