"""joint disclosure control: the population of a suppressed release, where its cells sit in that
population's partition, and its true counts sealed under the records' data keys

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("population", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("publication", JSON_TYPE, nullable=True))
        batch_op.add_column(sa.Column("sealed_counts", sa.LargeBinary(), nullable=True))
        batch_op.create_index("ix_releases_population", ["population", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index("ix_releases_population")
        batch_op.drop_column("sealed_counts")
        batch_op.drop_column("publication")
        batch_op.drop_column("population")
