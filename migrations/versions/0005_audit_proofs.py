"""audit proofs: stored perfect-subtree hashes, and the signed note of each checkpoint

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STORED_LEVEL = 8  # audit.models.STORED_LEVEL when this revision was written
PAGE = 10_000


def _append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # backbone_append_only() was created by revision 0001.
        op.execute(
            "CREATE TRIGGER audit_nodes_append_only BEFORE UPDATE OR DELETE ON audit_nodes "
            "FOR EACH ROW EXECUTE FUNCTION backbone_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_nodes_no_truncate BEFORE TRUNCATE ON audit_nodes "
            "FOR EACH STATEMENT EXECUTE FUNCTION backbone_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_nodes_no_{event.lower()} BEFORE {event} ON audit_nodes "
                "BEGIN SELECT RAISE(ABORT, 'audit_nodes is append-only'); END"
            )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_nodes_append_only ON audit_nodes")
        op.execute("DROP TRIGGER IF EXISTS audit_nodes_no_truncate ON audit_nodes")
    else:
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_nodes_no_{event}")


def _backfill_nodes() -> None:
    """Store the subtree hashes of events logged before this revision (same rule as the service)."""
    conn = op.get_bind()
    nodes = sa.table(
        "audit_nodes",
        sa.column("level", sa.SmallInteger),
        sa.column("idx", sa.BigInteger),
        sa.column("hash", sa.LargeBinary),
    )
    stack: list[bytes] = []
    n = 0
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT idx, leaf_hash FROM audit_events WHERE idx >= :n ORDER BY idx LIMIT :page"
            ),
            {"n": n, "page": PAGE},
        ).all()
        if not rows:
            break
        batch: list[dict[str, object]] = []
        for idx, leaf in rows:
            if idx != n:
                raise RuntimeError(f"audit_events is missing event {n}: the log has been altered")
            h, m, level = bytes(leaf), n, 0
            while m & 1:
                h = hashlib.sha256(b"\x01" + stack.pop() + h).digest()
                m >>= 1
                level += 1
                if level >= STORED_LEVEL:
                    batch.append({"level": level, "idx": m, "hash": h})
            stack.append(h)
            n += 1
        if batch:
            conn.execute(nodes.insert(), batch)


def upgrade() -> None:
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_nodes")),
    )
    # No checkpoint was ever written before this revision, so the default never survives.
    op.add_column(
        "audit_checkpoints", sa.Column("note", sa.Text(), server_default="", nullable=False)
    )
    _backfill_nodes()
    _append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table("audit_nodes")
    if op.get_bind().dialect.name == "sqlite":
        # A batch (copy-and-move) rebuild would drop the table's append-only triggers.
        op.execute("ALTER TABLE audit_checkpoints DROP COLUMN note")
    else:
        op.drop_column("audit_checkpoints", "note")
