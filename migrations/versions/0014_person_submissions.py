"""submissions by people: a submission (and an Idempotency-Key's reservation) names the OAuth
client or the person (``person:<id>``) who sent it, so its client_id no longer references clients

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_submissions_client_id_clients", type_="foreignkey")
    with op.batch_alter_table("idempotency_reservations", schema=None) as batch_op:
        batch_op.drop_constraint(
            "fk_idempotency_reservations_client_id_clients", type_="foreignkey"
        )


def downgrade() -> None:
    # A submission sent by a person names no client: it cannot be kept under the old constraint,
    # and its records are not deleted behind anyone's back.
    sent = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM submissions WHERE client_id LIKE 'person:%'")
    )
    if sent:
        raise RuntimeError(
            f"{sent} submissions were sent by people; purge or withdraw them before downgrading."
        )
    op.execute("DELETE FROM idempotency_reservations WHERE client_id LIKE 'person:%'")
    with op.batch_alter_table("idempotency_reservations", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_idempotency_reservations_client_id_clients", "clients", ["client_id"], ["id"]
        )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_submissions_client_id_clients", "clients", ["client_id"], ["id"]
        )
