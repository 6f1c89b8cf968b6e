"""Tables of submissions, their encrypted segments and the wrapped data keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JSONType, UTCDateTime


class DataKey(Base):
    """A data key per (agreement, dataset), wrapped by the key-encryption key.

    Destroying it (``wrapped`` emptied, ``destroyed_at`` set) makes every segment under it
    unreadable: crypto-shredding.
    """

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agreement_id: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_data_keys_agreement_dataset", "agreement_id", "dataset"),)


class Submission(Base):
    __tablename__ = "submissions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64))
    agreement_id: Mapped[str] = mapped_column(String(64))
    agreement_version: Mapped[int] = mapped_column(Integer)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"))
    # accepted | withdrawn | replaced | purged
    status: Mapped[str] = mapped_column(String(16))
    row_count: Mapped[int] = mapped_column(BigInteger)
    body_sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(64))
    period: Mapped[str | None] = mapped_column(String(32))
    replaces_id: Mapped[str | None] = mapped_column(ForeignKey("submissions.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    audit_index: Mapped[int | None] = mapped_column(BigInteger)
    columns: Mapped[list[str]] = mapped_column(JSONType)

    __table_args__ = (
        Index("ix_submissions_organization_id", "organization_id", "received_at"),
        Index("ix_submissions_dataset_status", "dataset", "status"),
        UniqueConstraint("client_id", "idempotency_key"),
    )


class Segment(Base):
    """One accepted submission as an encrypted Arrow IPC segment (AES-256-GCM)."""

    __tablename__ = "segments"

    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    data_key_id: Mapped[str] = mapped_column(ForeignKey("data_keys.id"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    schema: Mapped[dict[str, Any]] = mapped_column(JSONType)
