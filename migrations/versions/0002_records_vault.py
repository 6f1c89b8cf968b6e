"""records: segment key hierarchy, sealed segment parts, idempotency reservations

Segments written by revision 0001 (one ciphertext under the data key) stay readable: their
``ciphertext`` column is kept, now nullable, and new segments store their data in
``segment_parts`` under a per-submission segment key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("destroyed_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_data_keys_agreement_dataset")
        batch_op.create_index(
            "uq_data_keys_live",
            ["agreement_id", "dataset"],
            unique=True,
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        )

    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.alter_column("ciphertext", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.add_column(sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
        batch_op.add_column(
            sa.Column("part_count", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("row_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )

    op.create_table(
        "segment_parts",
        sa.Column("submission_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["segments.submission_id"],
            name=op.f("fk_segment_parts_submission_id_segments"),
        ),
        sa.PrimaryKeyConstraint("submission_id", "seq", name=op.f("pk_segment_parts")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Ciphertext does not compress: spare PostgreSQL the attempt when it is TOASTed.
        op.execute("ALTER TABLE segment_parts ALTER COLUMN ciphertext SET STORAGE EXTERNAL")

    op.create_table(
        "idempotency_reservations",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=160), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_idempotency_reservations_client_id_clients"),
        ),
        sa.PrimaryKeyConstraint("client_id", "key_hash", name=op.f("pk_idempotency_reservations")),
    )


def downgrade() -> None:
    op.drop_table("idempotency_reservations")
    op.drop_table("segment_parts")
    # Segments written after 0002 keep their data in the parts just dropped: their receipts
    # say so, rather than pointing at data that no longer exists.
    op.execute(
        "UPDATE submissions SET status = 'purged', purged_at = CURRENT_TIMESTAMP "
        "WHERE id IN (SELECT submission_id FROM segments WHERE ciphertext IS NULL)"
    )
    op.execute("DELETE FROM segments WHERE ciphertext IS NULL")
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.drop_column("row_count")
        batch_op.drop_column("part_count")
        batch_op.drop_column("wrapped_key")
        batch_op.alter_column("ciphertext", existing_type=sa.LargeBinary(), nullable=False)
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.drop_index("uq_data_keys_live", sqlite_where=LIVE, postgresql_where=LIVE)
        batch_op.create_index(
            "ix_data_keys_agreement_dataset", ["agreement_id", "dataset"], unique=False
        )
