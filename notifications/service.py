"""Webhook subscriptions, the outbox, and what an organization may see of its deliveries.

:func:`emit` is the one way a service reports an event: it writes the event and its deliveries
in the caller's transaction, so a rolled-back request notifies nothing and a committed one is
never missed. Services flush and never commit.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import Forbidden, NotFound
from core.ids import new_id
from core.keys import MasterKey
from identity.errors import InsufficientScope
from identity.models import Organization
from notifications import repository as repo
from notifications.addresses import AddressPolicy, Resolver, check_url, resolve
from notifications.errors import DeliveryNotReplayable, WebhookEventUnknown
from notifications.events import EVENT_TYPES, EventType, audience
from notifications.models import NotificationEvent, WebhookDelivery, WebhookSubscription
from notifications.signing import new_secret, seal_secret
from policy.model import AgreementTerms

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
UNDELIVERABLE, CANCELLED = "undeliverable", "cancelled"
MANAGE_SCOPE = "agreements:approve"
_EVENT_NAME = re.compile(r"^[a-z_]{1,32}\.[a-z_]{1,32}$")
ADMIN_SCOPE = "admin"


def emit(
    session: Session,
    event: EventType,
    data: Mapping[str, Any],
    *,
    now: datetime,
    agreements: Sequence[AgreementTerms],
    datasets: Collection[str] = (),
    recipients: Collection[str] | None = None,
) -> NotificationEvent:
    """Record ``event`` in the outbox, in the caller's transaction.

    It is delivered to every subscription to ``event`` of an organization party to
    ``agreements`` (only those in ``recipients`` when given: e.g. the parties yet to approve),
    and recorded for each party a ``notify`` obligation of these agreements names for it, as
    undeliverable when that party has no subscription to it. ``data`` must hold no record value
    and no person identifier. Flushes; the caller commits.
    """
    told = audience(event, agreements, datasets, recipients)
    row = NotificationEvent(
        id=new_id("msg"),
        type=event.value,
        occurred_at=now,
        agreement_id=agreements[0].id if len(agreements) == 1 else None,
        data=dict(data),
    )
    session.add(row)
    session.flush()
    reached: set[str] = set()
    for sub in repo.subscribers(session, told.parties | set(told.obligated)):
        if event.value not in sub.event_types:
            continue
        reached.add(sub.organization_id)
        session.add(
            WebhookDelivery(
                id=new_id("dlv"),
                event_seq=row.seq,
                subscription_id=sub.id,
                organization_id=sub.organization_id,
                state=PENDING,
                obligation=told.obligated.get(sub.organization_id),
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    for org, ref in sorted(told.obligated.items()):
        if org not in reached:
            session.add(
                WebhookDelivery(
                    id=new_id("dlv"),
                    event_seq=row.seq,
                    subscription_id=None,
                    organization_id=org,
                    state=UNDELIVERABLE,
                    obligation=ref,
                    attempts=0,
                    last_error="no webhook subscription to this event",
                    created_at=now,
                )
            )
    session.flush()
    return row


def emit_once(
    session: Session,
    key: str,
    event: EventType,
    data: Mapping[str, Any],
    *,
    now: datetime,
    agreements: Sequence[AgreementTerms],
    datasets: Collection[str] = (),
) -> NotificationEvent | None:
    """:func:`emit`, unless an event with ``key`` was ever emitted (then None)."""
    if repo.emitted(session, key):
        return None
    try:
        with session.begin_nested():
            row = emit(session, event, data, now=now, agreements=agreements, datasets=datasets)
            row.once_key = key
            session.flush()
    except IntegrityError:
        return None  # another process emitted it first
    return row


# -- managing subscriptions ---------------------------------------------------------------------


def _manager(ctx: RequestContext) -> tuple[str, bool]:
    """The caller's organization and whether it administers every organization."""
    if ctx.principal is None:
        raise Forbidden("An authenticated client is required.")
    scopes = ctx.principal.scopes
    if ADMIN_SCOPE in scopes:
        return ctx.principal.organization_id, True
    if MANAGE_SCOPE in scopes:
        return ctx.principal.organization_id, False
    raise InsufficientScope(frozenset({MANAGE_SCOPE}))


def _own(session: Session, ctx: RequestContext, subscription_id: str) -> WebhookSubscription:
    org, admin = _manager(ctx)
    row = repo.live(session, subscription_id)
    # Another organization's subscription gets the answer a missing one gets.
    if row is None or (not admin and row.organization_id != org):
        raise NotFound("No such webhook.")
    return row


@dataclass(frozen=True)
class Registered:
    subscription: WebhookSubscription
    secret: str  # shown once, at creation


def register(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    allow: AddressPolicy,
    *,
    url: str,
    event_types: Sequence[str],
    organization_id: str | None = None,
    description: str | None = None,
    resolver: Resolver = resolve,
) -> Registered:
    """Register a webhook for the caller's organization (an administrator: for any)."""
    org, admin = _manager(ctx)
    target = organization_id or org
    if target != org and not admin:
        raise Forbidden("A data manager registers webhooks for its own organization only.")
    if session.get(Organization, target) is None:
        raise NotFound("No such organization.")
    unknown = sorted(set(event_types) - EVENT_TYPES)
    if unknown or not event_types:
        # Named back only when it looks like an event type: a refusal echoes no arbitrary input.
        shown = [u if _EVENT_NAME.match(u) else "(unprintable)" for u in unknown[:20]]
        raise WebhookEventUnknown(
            ("Unknown event type(s): " + ", ".join(shown) + ". " if unknown else "")
            + "Known: "
            + ", ".join(sorted(EVENT_TYPES))
            + ".",
            extra={"known": sorted(EVENT_TYPES)},
        )
    check_url(url, allow, resolver)
    assert ctx.principal is not None
    secret = new_secret()
    row = WebhookSubscription(
        id=new_id("whk"),
        organization_id=target,
        url=url,
        event_types=sorted(set(event_types)),
        description=description,
        created_at=ctx.now,
        created_by=ctx.principal.client_id,
    )
    row.sealed_secret = seal_secret(master, row.id, secret)
    session.add(row)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.WEBHOOK_CREATE,
            resource_type="webhook",
            resource_id=row.id,
            detail=f"organization {target}; events {', '.join(row.event_types)}",
        ),
    )
    return Registered(row, secret)


def listing(session: Session, ctx: RequestContext) -> Sequence[WebhookSubscription]:
    """The caller's organization's webhooks (an administrator: every organization's)."""
    org, admin = _manager(ctx)
    return repo.listed(session, None if admin else org)


def get(session: Session, ctx: RequestContext, subscription_id: str) -> WebhookSubscription:
    """One of the caller's organization's webhooks (an administrator: any)."""
    return _own(session, ctx, subscription_id)


def delete(session: Session, ctx: RequestContext, subscription_id: str) -> WebhookSubscription:
    """Stop a webhook: nothing more is sent to it, and what was waiting is cancelled."""
    row = _own(session, ctx, subscription_id)
    row.deleted_at = ctx.now
    cancelled = 0
    for delivery in repo.pending_of(session, row.id):
        delivery.state = CANCELLED
        delivery.next_attempt_at = None
        cancelled += 1
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.WEBHOOK_DELETE,
            resource_type="webhook",
            resource_id=row.id,
            counts={"cancelled": cancelled},
        ),
    )
    return row


def deliveries(
    session: Session, ctx: RequestContext, subscription_id: str, limit: int, before: int | None
) -> Sequence[tuple[WebhookDelivery, NotificationEvent]]:
    """A webhook's deliveries with their events, newest first (``before``: an event cursor)."""
    row = _own(session, ctx, subscription_id)
    return repo.deliveries(session, row.id, limit, before)


def notifications(
    session: Session, ctx: RequestContext, limit: int, before: int | None
) -> Sequence[tuple[WebhookDelivery, NotificationEvent]]:
    """What was addressed to the caller's organization, undeliverable records included."""
    org, _admin = _manager(ctx)
    return repo.notifications(session, org, limit, before)


def replay(
    session: Session, ctx: RequestContext, subscription_id: str, delivery_id: str
) -> WebhookDelivery:
    """Send a delivered or failed delivery again (same webhook-id: receivers deduplicate)."""
    row = _own(session, ctx, subscription_id)
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.subscription_id != row.id:
        raise NotFound("No such delivery.")
    if delivery.state not in (DELIVERED, FAILED):
        raise DeliveryNotReplayable(
            f"The delivery is {delivery.state}; only a delivered or failed one can be replayed."
        )
    delivery.state = PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = ctx.now
    delivery.last_error = None
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.WEBHOOK_REPLAY,
            resource_type="webhook_delivery",
            resource_id=delivery.id,
            detail=f"webhook {row.id}",
        ),
    )
    return delivery


def event_of(session: Session, delivery: WebhookDelivery) -> NotificationEvent:
    """The event a delivery carries."""
    event = session.get(NotificationEvent, delivery.event_seq)
    assert event is not None
    return event


def view(delivery: WebhookDelivery, event: NotificationEvent) -> dict[str, Any]:
    """A delivery as its organization sees it."""
    return {
        "id": delivery.id,
        "webhook": delivery.subscription_id,
        "event": {
            "id": event.id,
            "type": event.type,
            "occurred_at": event.occurred_at.isoformat(),
            "data": event.data,
        },
        "state": delivery.state,
        "obligation": delivery.obligation,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat()
        if delivery.next_attempt_at and delivery.state == PENDING
        else None,
        "last_attempt_at": delivery.last_attempt_at.isoformat()
        if delivery.last_attempt_at
        else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
        "cursor": event.seq,
    }


def subscription_view(row: WebhookSubscription) -> dict[str, Any]:
    """A webhook as its organization sees it (never its secret)."""
    return {
        "id": row.id,
        "organization": row.organization_id,
        "url": row.url,
        "event_types": list(row.event_types),
        "description": row.description,
        "created_at": row.created_at.isoformat(),
    }
