"""withdrawal terms: when a partner asked to withdraw a submission and when it takes effect

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("withdrawal_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("withdrawal_effective_at", sa.DateTime(timezone=True), nullable=True)
        )
    # Withdrawals made before the terms were enforced took effect at once.
    op.execute(
        "UPDATE submissions SET withdrawal_requested_at = withdrawn_at,"
        " withdrawal_effective_at = withdrawn_at WHERE status = 'withdrawn'"
    )


def downgrade() -> None:
    # A withdrawal still pending cannot be represented without these columns: it takes effect
    # now, as every withdrawal did before this revision (stopping use early is the safe side).
    op.execute(
        "UPDATE submissions SET status = 'withdrawn', withdrawn_at = CURRENT_TIMESTAMP"
        " WHERE status = 'accepted' AND withdrawal_effective_at IS NOT NULL"
    )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_column("withdrawal_effective_at")
        batch_op.drop_column("withdrawal_requested_at")
