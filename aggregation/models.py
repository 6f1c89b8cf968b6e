"""Tables of indicator definitions and their immutable releases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JSONType, UTCDateTime


class Indicator(Base):
    __tablename__ = "indicators"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    latest_version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IndicatorVersion(Base):
    __tablename__ = "indicator_versions"

    indicator_id: Mapped[str] = mapped_column(ForeignKey("indicators.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    content_hash: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_client: Mapped[str] = mapped_column(String(64))


class Release(Base):
    """An immutable release: the published cells and everything needed to explain them."""

    __tablename__ = "releases"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    indicator_id: Mapped[str] = mapped_column(String(64))
    indicator_version: Mapped[int] = mapped_column(Integer)
    request_key: Mapped[str] = mapped_column(String(80))
    method: Mapped[str] = mapped_column(String(32))
    dimensions: Mapped[list[str]] = mapped_column(JSONType)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    cells: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSONType)
    recipients: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    audit_index: Mapped[int | None] = mapped_column(BigInteger)
    # Suppressed releases: the dataset whose records they count (the population audited
    # jointly), where their cells sit in its partition, and their true counts sealed under the
    # data keys of those records (destroyed with them).
    population: Mapped[str | None] = mapped_column(String(64))
    publication: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    sealed_counts: Mapped[bytes | None] = mapped_column(LargeBinary)
    # published | pending_review | objected. Cells never change; only a held release's state
    # does, once (to published or objected), and then never again.
    state: Mapped[str] = mapped_column(String(16), server_default="published")
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        ForeignKeyConstraint(
            ["indicator_id", "indicator_version"],
            ["indicator_versions.indicator_id", "indicator_versions.version"],
            name="fk_releases_indicator_version",
        ),
        UniqueConstraint("indicator_id", "request_key"),
        Index("ix_releases_indicator_created", "indicator_id", "created_at"),
        Index("ix_releases_population", "population", "created_at"),
        Index("ix_releases_state", "state", "created_at"),
    )


class ReleaseReview(Base):
    """One organization's review of a held release: due by ``due_at`` under the agreements that
    give it the right, and its decision (approve or object, with a reason) once it answers."""

    __tablename__ = "release_reviews"

    release_id: Mapped[str] = mapped_column(ForeignKey("releases.id"), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    agreements: Mapped[list[str]] = mapped_column(JSONType)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    on_timeout: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(2000))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("decision IN ('approve', 'object')", name="decision"),
        Index("ix_release_reviews_organization", "organization_id", "decision"),
    )


class PrivacyBudget(Base):
    """The privacy-loss budget of one (agreement, dataset, period); never spent past its limit."""

    __tablename__ = "privacy_budgets"

    agreement_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)
    epsilon_limit: Mapped[float] = mapped_column(Float)
    epsilon_spent: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(
            "epsilon_spent >= 0 AND epsilon_spent <= epsilon_limit + 0.000000001",
            name="within_limit",
        ),
    )


class PrivacyCharge(Base):
    """One entry of the ledger: a release's privacy loss charged to one budget."""

    __tablename__ = "privacy_charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agreement_id: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(32))
    epsilon: Mapped[float] = mapped_column(Float)
    release_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_privacy_charges_budget", "agreement_id", "dataset", "period"),)
