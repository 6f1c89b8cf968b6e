"""agreement approvals by people: an approval names the OAuth client or the person
(``person:<id>``) who gave it, so its client_id no longer references clients

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agreement_approvals", schema=None) as batch_op:
        batch_op.drop_constraint("fk_agreement_approvals_client_id_clients", type_="foreignkey")


def downgrade() -> None:
    # Approvals given by people name no client: they cannot be kept under the old constraint.
    op.execute("DELETE FROM agreement_approvals WHERE client_id LIKE 'person:%'")
    with op.batch_alter_table("agreement_approvals", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_agreement_approvals_client_id_clients", "clients", ["client_id"], ["id"]
        )
