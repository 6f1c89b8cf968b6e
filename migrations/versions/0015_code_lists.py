"""shared code lists: versioned lists of codes agreements refer to, and each agreement
version's copy of the code list versions it refers to

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "code_lists",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("standard", sa.String(length=500), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("codes", JSON_TYPE, nullable=False),
        sa.Column("code_count", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["organizations.id"],
            name=op.f("fk_code_lists_created_by_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", "version", name=op.f("pk_code_lists")),
    )
    with op.batch_alter_table("agreement_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("codelists", JSON_TYPE, nullable=True))


def downgrade() -> None:
    # A version that refers to a code list cannot be compiled without its copy of the codes.
    bound = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM agreement_versions WHERE codelists IS NOT NULL")
    )
    if bound:
        raise RuntimeError(
            f"{bound} agreement versions refer to code lists; they cannot be kept without them."
        )
    with op.batch_alter_table("agreement_versions", schema=None) as batch_op:
        batch_op.drop_column("codelists")
    op.drop_table("code_lists")
