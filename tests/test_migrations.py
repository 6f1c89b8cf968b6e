"""The schema is made by the migrations, matches the models, and downgrades cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from core.db import make_engine
from migrations.commands import downgrade, head_revision, upgrade
from migrations.schema import metadata


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, metadata)
    finally:
        engine.dispose()


def test_upgrade_matches_models_and_downgrade_round_trips(fresh_databases):
    url = fresh_databases.url()
    upgrade(url)
    assert _diff(url) == []
    downgrade(url, "base")
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
    finally:
        engine.dispose()
    upgrade(url)
    assert _diff(url) == []
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                == head_revision()
            )
            assert conn.execute(text("SELECT size FROM audit_head WHERE id = 1")).scalar() == 0
    finally:
        engine.dispose()
