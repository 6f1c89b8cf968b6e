"""review before publication: a release's state (published, pending_review, objected), when it
was published, and the providers' review decisions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Every release stored before review existed went straight to its recipients: published.
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("state", sa.String(length=16), server_default="published", nullable=False)
        )
        batch_op.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_releases_state", ["state", "created_at"], unique=False)
    op.execute("UPDATE releases SET published_at = created_at")
    op.create_table(
        "release_reviews",
        sa.Column("release_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("agreements", JSON_TYPE, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("on_timeout", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=2000), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "decision IN ('approve', 'object')", name=op.f("ck_release_reviews_decision")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_release_reviews_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_release_reviews_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("release_id", "organization_id", name=op.f("pk_release_reviews")),
    )
    with op.batch_alter_table("release_reviews", schema=None) as batch_op:
        batch_op.create_index(
            "ix_release_reviews_organization", ["organization_id", "decision"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("release_reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_release_reviews_organization")
    op.drop_table("release_reviews")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index("ix_releases_state")
        batch_op.drop_column("published_at")
        batch_op.drop_column("state")
