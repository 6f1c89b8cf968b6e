"""Tables of the access log.

Database triggers refuse UPDATE and DELETE on events, checkpoints and stored subtree hashes, on
SQLite and PostgreSQL alike (migrations 0001 and 0005). Only ``audit_head`` changes in place: it is
the counter and Merkle frontier that every append advances under a row lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JSONType, UTCDateTime

# Perfect subtrees of 2**STORED_LEVEL leaves and more are stored as they complete (about one row per
# 128 events); smaller ones are recomputed from at most 2**STORED_LEVEL leaf hashes when a proof
# needs them. Migration 0005 backfills with the same value: change both together.
STORED_LEVEL = 8


class AuditEvent(Base):
    __tablename__ = "audit_events"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    request_id: Mapped[str | None] = mapped_column(String(64))
    organization_id: Mapped[str | None] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str | None] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(128))
    agreements: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    purpose: Mapped[str | None] = mapped_column(String(80))
    decision: Mapped[str | None] = mapped_column(String(8))
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_organization_id", "organization_id", "idx"),
        Index("ix_audit_events_action", "action", "idx"),
    )


class AuditHead(Base):
    """One row: the size of the log and the Merkle frontier (roots of its perfect subtrees)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes] = mapped_column(LargeBinary)


class AuditNode(Base):
    """The hash of the perfect subtree of leaves ``[idx * 2**level, (idx + 1) * 2**level)``."""

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed tree head; ``note`` is the whole C2SP signed note, exactly as served."""

    __tablename__ = "audit_checkpoints"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str] = mapped_column(Text, server_default="")
