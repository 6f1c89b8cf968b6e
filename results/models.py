"""Tables of results (RBA): results and their indicators, stories behind the curve and their
versions, strategies, partners' roles and the action plan."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JSONType, UTCDateTime


class Result(Base):
    """A condition of well-being for a population (a child, adult, family or community)."""

    __tablename__ = "results"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text)
    population: Mapped[str] = mapped_column(String(300))
    geography: Mapped[str] = mapped_column(String(300))
    public: Mapped[bool] = mapped_column(Boolean)
    created_by: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ResultIndicator(Base):
    """An indicator of a result, in the result's order. Baseline, target and direction are the
    indicator definition's: a result reads them and never overrides them."""

    __tablename__ = "result_indicators"

    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"), primary_key=True)
    indicator_id: Mapped[str] = mapped_column(ForeignKey("indicators.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        CheckConstraint("role IN ('primary', 'secondary')", name="role"),
        Index("ix_result_indicators_indicator", "indicator_id"),
    )


class Story(Base):
    """A story behind the curve, attached to a result and, within it, to one of its indicators or
    to a release of one; written and revised by its author organization only."""

    __tablename__ = "stories"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"), index=True)
    # A release's story names the release's indicator too, so that it is found by indicator.
    indicator_id: Mapped[str | None] = mapped_column(ForeignKey("indicators.id"), index=True)
    release_id: Mapped[str | None] = mapped_column(ForeignKey("releases.id"))
    author_organization: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    author_client: Mapped[str] = mapped_column(String(64))
    audience: Mapped[str] = mapped_column(String(16))
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("audience IN ('public', 'initiative')", name="audience"),
        CheckConstraint(
            "release_id IS NULL OR indicator_id IS NOT NULL", name="release_has_indicator"
        ),
    )


class StoryVersion(Base):
    """One version of a story; the newest is current, and earlier ones stay readable."""

    __tablename__ = "story_versions"

    story_id: Mapped[str] = mapped_column(ForeignKey("stories.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    as_of: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    author_organization: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    author_client: Mapped[str] = mapped_column(String(64))


class Strategy(Base):
    """What works: a strategy towards a result, its evidence and the partners carrying it."""

    __tablename__ = "result_strategies"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    partners: Mapped[list[str]] = mapped_column(JSONType)
    created_by: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PartnerRole(Base):
    """A partner organization's role towards a result and what it commits to."""

    __tablename__ = "result_partners"

    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(1000))
    commitments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(ForeignKey("organizations.id"))


class ActionItem(Base):
    """One item of a result's action plan."""

    __tablename__ = "result_actions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    owner_organization: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    due: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("status IN ('planned', 'in_progress', 'done')", name="status"),
    )
