"""Tables of submissions, their encrypted segments, the key hierarchy and idempotency reservations.

Key hierarchy (see :mod:`records.vault`)::

    master key --HKDF--> key-encryption key (KEK)
        wraps  data key            one per (agreement, dataset)          data_keys.wrapped
          wraps  segment key       one per submission                    segments.wrapped_key
            seals  segment parts   Parquet, AES-256-GCM                 segment_parts.ciphertext

Destroying a data key shreds every submission of an (agreement, dataset); deleting a segment row
(and with it the only copy of its wrapped segment key) shreds one withdrawn submission. The small
key-bearing tables are kept apart from the bulky ciphertext so that they can be rewritten cheaply
after a purge (see :func:`records.retention.scrub`).
"""

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JSONType, UTCDateTime


class DataKey(Base):
    """A data key per (agreement, dataset), wrapped by the key-encryption key.

    Destroying it (``wrapped`` emptied, ``destroyed_at`` set) makes every segment under it
    unreadable: crypto-shredding. At most one live key exists per (agreement, dataset).
    """

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agreement_id: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    # Which key-encryption key wraps it: ``kek/v1/<master key fingerprint>``.
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(
            "uq_data_keys_live",
            "agreement_id",
            "dataset",
            unique=True,
            sqlite_where=text("destroyed_at IS NULL"),
            postgresql_where=text("destroyed_at IS NULL"),
        ),
    )


class Submission(Base):
    """The receipt of one accepted submission; it outlives its data (status ``purged``)."""

    __tablename__ = "submissions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64))
    agreement_id: Mapped[str] = mapped_column(String(64))
    agreement_version: Mapped[int] = mapped_column(Integer)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    # The OAuth client or the person (``person:<id>``) who sent it.
    client_id: Mapped[str] = mapped_column(String(64))
    # accepted | withdrawn | replaced | purged
    status: Mapped[str] = mapped_column(String(16))
    row_count: Mapped[int] = mapped_column(BigInteger)
    body_sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(64))
    period: Mapped[str | None] = mapped_column(String(32))
    replaces_id: Mapped[str | None] = mapped_column(ForeignKey("submissions.id"))
    # A keyed hash of the client's Idempotency-Key, never the key itself (clients put file
    # names and other free text there).
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A partner's withdrawal: when it was asked for and when it takes effect (the agreement's
    # ``withdrawal.notice_days`` later). Until then the status stays ``accepted`` and the data
    # stays in use; scope queries compare ``withdrawal_effective_at`` with their ``now``, so it
    # leaves every release exactly at that moment, whenever the purge run records it.
    withdrawal_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawal_effective_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    audit_index: Mapped[int | None] = mapped_column(BigInteger)
    columns: Mapped[list[str]] = mapped_column(JSONType)
    # The data-quality report (counts only, see records.quality); None before revision 0019.
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        Index("ix_submissions_organization_id", "organization_id", "received_at"),
        Index("ix_submissions_dataset_status", "dataset", "status"),
        UniqueConstraint("client_id", "idempotency_key"),
    )


class Segment(Base):
    """One accepted submission as an encrypted, columnar segment.

    ``wrapped_key`` is the submission's segment key wrapped by its data key, with associated
    data that also binds ``part_count`` and ``row_count`` (so parts cannot be dropped or added
    unnoticed). Segments written before revision 0002 hold one ``ciphertext`` under the data key
    directly (format ``arrow-ipc-zstd``); they are still read and purged.
    """

    __tablename__ = "segments"

    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    data_key_id: Mapped[str] = mapped_column(ForeignKey("data_keys.id"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    schema: Mapped[dict[str, Any]] = mapped_column(JSONType)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    part_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    row_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class SegmentPart(Base):
    """A sealed part of a segment: Parquet (zstd) of about a hundred thousand rows."""

    __tablename__ = "segment_parts"

    submission_id: Mapped[str] = mapped_column(
        ForeignKey("segments.submission_id"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class IdempotencyReservation(Base):
    """An Idempotency-Key whose first request is still in flight.

    Committed before the body is read, so a concurrent request with the same key sees it and
    gets 409. It is deleted in the transaction that stores the submission (or when the request
    fails). A reservation whose owner process is gone, or whose lease has lapsed without a
    heartbeat, no longer blocks: the next request with the key takes it over.
    """

    __tablename__ = "idempotency_reservations"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(160))
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime())


class ResumableUpload(Base):
    """A tus upload in progress (or finished): its bytes land in a file under the upload
    directory; once complete they go through the one ingest path and the outcome (the
    submission, or the problem) is kept here for the client to read."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The OAuth client or the person (``person:<id>``) who created it: the only one who sees it.
    client_id: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    # period, replaces, sheet, content_type, content_encoding
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # A keyed hash of the Idempotency-Key (see records.idempotency), never the key itself.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger)
    # receiving | complete | refused | expired
    state: Mapped[str] = mapped_column(String(16))
    # Held by the one PATCH appending bytes (until it ends or the lease lapses).
    busy_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submission_id: Mapped[str | None] = mapped_column(String(64))
    problem: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key"),
        Index("ix_uploads_state_expires_at", "state", "expires_at"),
    )
