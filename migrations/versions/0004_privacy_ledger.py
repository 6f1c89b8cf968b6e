"""privacy ledger: budgets per agreement, dataset and period, and the charges against them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "privacy_budgets",
        sa.Column("agreement_id", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("epsilon_limit", sa.Float(), nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "epsilon_spent >= 0 AND epsilon_spent <= epsilon_limit + 0.000000001",
            name=op.f("ck_privacy_budgets_within_limit"),
        ),
        sa.PrimaryKeyConstraint(
            "agreement_id", "dataset", "period", name=op.f("pk_privacy_budgets")
        ),
    )
    op.create_table(
        "privacy_charges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agreement_id", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("release_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_charges")),
    )
    with op.batch_alter_table("privacy_charges", schema=None) as batch_op:
        batch_op.create_index(
            "ix_privacy_charges_budget", ["agreement_id", "dataset", "period"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("privacy_charges", schema=None) as batch_op:
        batch_op.drop_index("ix_privacy_charges_budget")

    op.drop_table("privacy_charges")
    op.drop_table("privacy_budgets")
