"""Tables of webhook subscriptions, the outbox of events, and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JSONType, UTCDateTime


class WebhookSubscription(Base):
    """An organization's endpoint for some event types; its secret is sealed (AES-256-GCM)
    under a key derived from the master key and bound to the subscription id."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("organizations.id"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[str]] = mapped_column(JSONType)
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary)
    description: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A deliverer works on one subscription at a time, under a lease, so that its deliveries go
    # out in order and once even with several deliverers running.
    lease_owner: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class NotificationEvent(Base):
    """The outbox: one row per event, written in the transaction of what it reports."""

    __tablename__ = "notification_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    agreement_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Set for an event that must happen once (an agreement version's expiry notice): two
    # processes noticing it at once cannot both record it.
    once_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)


class WebhookDelivery(Base):
    """One event for one subscription (or, for a party a ``notify`` obligation names that has
    no subscription to the event, an undeliverable record of it)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_queue", "subscription_id", "state", "event_seq"),
        Index("ix_webhook_deliveries_organization", "organization_id", "event_seq"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_seq: Mapped[int] = mapped_column(Integer, ForeignKey("notification_events.seq"))
    subscription_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("webhook_subscriptions.id"), nullable=True
    )
    organization_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    obligation: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
