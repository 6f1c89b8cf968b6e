"""The job resource: what ``GET /v1/jobs/{id}`` shows of a release computed in the background.

The queue itself is the job engine's (procrastinate's tables on PostgreSQL); this table is
Backbone's own record of each job: who asked, for what, how far it has got, and how it ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JSONType, UTCDateTime

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
ACTIVE = (QUEUED, RUNNING)
_ACTIVE_SQL = text("state IN ('queued', 'running')")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The same request of one organization while its job is queued or running is that job.
        Index(
            "ix_jobs_active_request",
            "organization_id",
            "indicator_id",
            "request_key",
            unique=True,
            sqlite_where=_ACTIVE_SQL,
            postgresql_where=_ACTIVE_SQL,
        ),
        Index("ix_jobs_state", "state", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(32))
    progress: Mapped[float] = mapped_column(Float)
    # The requester, as authenticated when it asked (the job acts for it, and only it reads it).
    organization_id: Mapped[str] = mapped_column(String(64))
    organization_kind: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    request_id: Mapped[str] = mapped_column(String(64))
    indicator_id: Mapped[str] = mapped_column(String(64))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    request_key: Mapped[str] = mapped_column(String(80))
    release_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    release_created: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # A failed job's error: its stable kind, title, detail and extensions (never record values).
    problem: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
