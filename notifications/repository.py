"""Queries of subscriptions, events and deliveries."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from notifications.models import NotificationEvent, WebhookDelivery, WebhookSubscription

PENDING = "pending"


def subscribers(session: Session, organizations: Collection[str]) -> Sequence[WebhookSubscription]:
    """The live subscriptions of ``organizations``, oldest first."""
    if not organizations:
        return []
    return session.scalars(
        select(WebhookSubscription)
        .where(
            WebhookSubscription.organization_id.in_(sorted(organizations)),
            WebhookSubscription.deleted_at.is_(None),
        )
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    ).all()


def emitted(session: Session, once_key: str) -> bool:
    """Whether the event that must happen once under ``once_key`` was recorded."""
    found = session.scalar(
        select(NotificationEvent.seq).where(NotificationEvent.once_key == once_key).limit(1)
    )
    return found is not None


def live(session: Session, subscription_id: str) -> WebhookSubscription | None:
    """A subscription that has not been deleted."""
    row = session.get(WebhookSubscription, subscription_id)
    return row if row is not None and row.deleted_at is None else None


def listed(session: Session, organization_id: str | None) -> Sequence[WebhookSubscription]:
    """Live subscriptions, newest first: an organization's, or all when it is None."""
    query = select(WebhookSubscription).where(WebhookSubscription.deleted_at.is_(None))
    if organization_id is not None:
        query = query.where(WebhookSubscription.organization_id == organization_id)
    return session.scalars(query.order_by(WebhookSubscription.created_at.desc())).all()


def deliveries(
    session: Session, subscription_id: str, limit: int, before: int | None
) -> Sequence[tuple[WebhookDelivery, NotificationEvent]]:
    """A subscription's deliveries, newest event first."""
    query = (
        select(WebhookDelivery, NotificationEvent)
        .join(NotificationEvent, NotificationEvent.seq == WebhookDelivery.event_seq)
        .where(WebhookDelivery.subscription_id == subscription_id)
    )
    if before is not None:
        query = query.where(WebhookDelivery.event_seq < before)
    rows = session.execute(query.order_by(WebhookDelivery.event_seq.desc()).limit(limit)).all()
    return [(d, e) for d, e in rows]


def notifications(
    session: Session, organization_id: str, limit: int, before: int | None
) -> Sequence[tuple[WebhookDelivery, NotificationEvent]]:
    """Everything addressed to an organization (deliveries and undeliverable records)."""
    query = (
        select(WebhookDelivery, NotificationEvent)
        .join(NotificationEvent, NotificationEvent.seq == WebhookDelivery.event_seq)
        .where(WebhookDelivery.organization_id == organization_id)
    )
    if before is not None:
        query = query.where(WebhookDelivery.event_seq < before)
    rows = session.execute(
        query.order_by(WebhookDelivery.event_seq.desc(), WebhookDelivery.id).limit(limit)
    ).all()
    return [(d, e) for d, e in rows]


def pending_of(session: Session, subscription_id: str) -> Sequence[WebhookDelivery]:
    """A subscription's deliveries still to send."""
    return session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.state == PENDING
        )
    ).all()


def claimable(
    session: Session, now: datetime, owner: str, skip: Collection[str]
) -> WebhookSubscription | None:
    """Lock one live subscription with a pending delivery and no live lease (skipping rows
    another deliverer holds locked), for ``owner`` to take."""
    due = exists().where(
        WebhookDelivery.subscription_id == WebhookSubscription.id,
        WebhookDelivery.state == PENDING,
        WebhookDelivery.next_attempt_at <= now,
    )
    query = select(WebhookSubscription).where(
        WebhookSubscription.deleted_at.is_(None),
        (WebhookSubscription.lease_until.is_(None)) | (WebhookSubscription.lease_until < now),
        due,
    )
    if skip:
        query = query.where(WebhookSubscription.id.not_in(sorted(skip)))
    return session.scalars(
        query.order_by(WebhookSubscription.id).limit(1).with_for_update(skip_locked=True)
    ).first()


def head(session: Session, subscription_id: str) -> WebhookDelivery | None:
    """The earliest pending delivery of a subscription: nothing later goes before it."""
    return session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.state == PENDING)
        .order_by(WebhookDelivery.event_seq)
        .limit(1)
    ).first()
