"""release jobs: Backbone's job resource, and on PostgreSQL procrastinate's queue

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

On PostgreSQL this revision also applies procrastinate's schema (its tables, types, functions
and triggers, all named ``procrastinate_*``) as the installed procrastinate ships it; the
dependency is pinned to one minor version (``pyproject.toml``), and a change of that pin comes
with a revision that applies procrastinate's own migration scripts between the two versions
(``procrastinate/sql/migrations``). SQLite has no queue: jobs run in the serving process.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = sa.text("state IN ('queued', 'running')")


def _procrastinate_schema() -> str:
    from procrastinate.schema import SchemaManager

    return str(SchemaManager.get_schema())


def _raw_execute(sql: str) -> None:
    """Run a script through the driver itself, without parameters (so that ``%`` and ``:``
    in PL/pgSQL bodies are not taken for placeholders), in the migration's transaction."""
    raw = op.get_bind().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(sql)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("organization_kind", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column(
            "scopes", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("indicator_id", sa.String(length=64), nullable=False),
        sa.Column(
            "request", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("request_key", sa.String(length=80), nullable=False),
        sa.Column("release_id", sa.String(length=64), nullable=True),
        sa.Column("release_created", sa.Boolean(), nullable=True),
        sa.Column(
            "problem", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_active_request",
            ["organization_id", "indicator_id", "request_key"],
            unique=True,
            sqlite_where=_ACTIVE,
            postgresql_where=_ACTIVE,
        )
        batch_op.create_index("ix_jobs_state", ["state", "updated_at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        _raw_execute(_procrastinate_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        schema = _procrastinate_schema()
        tables = re.findall(r"CREATE TABLE (procrastinate_\w+)", schema)
        functions = re.findall(r"CREATE FUNCTION (procrastinate_\w+)\(", schema)
        types = re.findall(r"CREATE TYPE (procrastinate_\w+)", schema)
        statements = [f"DROP TABLE IF EXISTS {', '.join(tables)} CASCADE"]
        statements += [f"DROP FUNCTION IF EXISTS {name} CASCADE" for name in functions]
        statements += [f"DROP TYPE IF EXISTS {', '.join(types)} CASCADE"]
        _raw_execute(";\n".join(statements))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state")
        batch_op.drop_index("ix_jobs_active_request")
    op.drop_table("jobs")
