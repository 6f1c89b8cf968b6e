"""Sending what the outbox holds: :func:`deliver_due`, run by ``backbone webhooks deliver``.

A deliverer takes one subscription at a time under a lease (claimed with ``SELECT ... FOR
UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serializes the claim on its write lock), then sends
that subscription's pending deliveries in event order, each one only after every earlier one is
delivered or has finally failed: so two deliverers never send the same delivery, and a later
event never reaches a subscription before an earlier one. Requests go out holding no database
transaction. A receiver that does not answer 2xx within the timeout is tried again with
exponential backoff, up to a number of attempts; then the delivery is failed (and can be
replayed). Redirects are not followed, and the address is checked again (see
:mod:`notifications.addresses`) before every attempt.

A delivery acknowledged by the receiver but whose result could not be stored (a crash between
the two) is sent again: delivery is at least once, and receivers deduplicate on ``webhook-id``,
as the Standard Webhooks specification expects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session

from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.ids import new_id
from core.keys import MasterKey
from core.settings import Settings
from notifications import repository as repo
from notifications.addresses import AddressPolicy, Destination, Resolver, check_url, resolve
from notifications.errors import WebhookUrlRefused
from notifications.models import NotificationEvent, WebhookDelivery, WebhookSubscription
from notifications.service import DELIVERED, FAILED
from notifications.signing import headers, open_secret

log = logging.getLogger("backbone.notifications")
USER_AGENT = "Backbone-Webhooks/1"


@dataclass(frozen=True)
class DeliveryConfig:
    allow: AddressPolicy
    timeout_seconds: float = 5.0
    max_attempts: int = 8
    backoff_seconds: float = 30.0
    backoff_cap_seconds: float = 6 * 3600.0
    lease: timedelta = timedelta(minutes=10)
    batch: int = 50  # deliveries per subscription per claim, so that the lease is never outlived
    resolver: Resolver = resolve

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        """The deliverer's configuration from the ``BACKBONE_WEBHOOK_*`` settings."""
        return cls(
            allow=AddressPolicy.parse(settings.webhook_allow_hosts),
            timeout_seconds=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
            backoff_seconds=settings.webhook_backoff_seconds,
        )

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt: doubling, capped."""
        seconds = self.backoff_seconds * (2 ** max(0, attempts - 1))
        return timedelta(seconds=min(seconds, self.backoff_cap_seconds))


@dataclass
class DeliveryReport:
    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    webhooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counts (``backbone webhooks deliver --json``)."""
        return {
            "attempted": self.attempted,
            "delivered": self.delivered,
            "retrying": self.retrying,
            "failed": self.failed,
        }


def body_of(event: NotificationEvent) -> bytes:
    """The payload (the Standard Webhooks envelope); the same bytes at every attempt."""
    envelope = {
        "type": event.type,
        "timestamp": event.occurred_at.isoformat(),
        "data": event.data,
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Attempt:
    delivery_id: str
    destination: Destination | None
    refusal: str | None
    message_id: str
    body: bytes
    secret: str


def _send(client: httpx.Client, attempt: _Attempt, now: datetime) -> tuple[int | None, str | None]:
    """POST to the checked address (the name is not resolved again); (status, error)."""
    dest = attempt.destination
    assert dest is not None
    url = httpx.URL(dest.url)
    address = dest.addresses[0].split("%", 1)[0]
    request_headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": url.netloc.decode("ascii"),
        **headers(attempt.secret, attempt.message_id, now, attempt.body),
    }
    extensions = {"sni_hostname": dest.host} if dest.scheme == "https" else {}
    try:
        # Streamed and closed unread: only the status matters, and a receiver's body, however
        # large, is never held in memory.
        with client.stream(
            "POST",
            url.copy_with(host=address),
            content=attempt.body,
            headers=request_headers,
            extensions=extensions,
        ) as response:
            status = response.status_code
    except httpx.TimeoutException:
        return None, "timed out"
    except httpx.HTTPError as exc:
        return None, f"could not connect ({type(exc).__name__})"
    if 200 <= status < 300:
        return status, None
    if 300 <= status < 400:
        return status, "redirects are not followed"
    return status, f"answered {status}"


def _claim(
    sessions: Callable[[], Session],
    now: datetime,
    owner: str,
    config: DeliveryConfig,
    seen: set[str],
) -> str | None:
    with sessions() as session, session.begin():
        sub = repo.claimable(session, now, owner, seen)
        if sub is None:
            return None
        sub.lease_owner = owner
        sub.lease_until = now + config.lease
        return sub.id


def _release(sessions: Callable[[], Session], subscription_id: str, owner: str) -> None:
    with sessions() as session, session.begin():
        sub = session.get(WebhookSubscription, subscription_id)
        if sub is not None and sub.lease_owner == owner:
            sub.lease_owner = None
            sub.lease_until = None


def _next(
    sessions: Callable[[], Session],
    subscription_id: str,
    now: datetime,
    master: MasterKey,
    config: DeliveryConfig,
) -> _Attempt | None:
    with sessions() as session, session.begin():
        sub = repo.live(session, subscription_id)
        if sub is None:
            return None
        delivery = repo.head(session, subscription_id)
        if delivery is None or (delivery.next_attempt_at and delivery.next_attempt_at > now):
            return None  # nothing due; a later delivery waits for this one
        event = session.get(NotificationEvent, delivery.event_seq)
        assert event is not None
        try:
            destination: Destination | None = check_url(sub.url, config.allow, config.resolver)
            refusal = None
        except WebhookUrlRefused as exc:
            destination, refusal = None, exc.detail
        return _Attempt(
            delivery.id,
            destination,
            refusal,
            event.id,
            body_of(event),
            open_secret(master, sub.id, sub.sealed_secret),
        )


def _settle(
    sessions: Callable[[], Session],
    attempt: _Attempt,
    owner: str,
    now: datetime,
    status: int | None,
    error: str | None,
    config: DeliveryConfig,
) -> str:
    """Store an attempt's outcome (and its audit event); the delivery's new state."""
    with sessions() as session, session.begin():
        delivery = session.get(WebhookDelivery, attempt.delivery_id)
        assert delivery is not None and delivery.subscription_id is not None
        sub = session.get(WebhookSubscription, delivery.subscription_id)
        if sub is None or sub.lease_owner != owner or delivery.state != "pending":
            return delivery.state  # the lease was lost or the webhook deleted meanwhile
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_status_code = status
        delivery.last_error = error[:200] if error else None
        if error is None:
            delivery.state = DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
        elif delivery.attempts >= config.max_attempts:
            delivery.state = FAILED
            delivery.next_attempt_at = None
        else:
            delivery.next_attempt_at = now + config.backoff(delivery.attempts)
        session.flush()
        record(
            session,
            RequestContext(new_id("dlv"), now, None),
            AuditRecord(
                action=AuditAction.WEBHOOK_DELIVER,
                outcome="succeeded" if error is None else "failed",
                resource_type="webhook_delivery",
                resource_id=delivery.id,
                counts={"attempts": delivery.attempts, **({"status": status} if status else {})},
                detail=f"webhook {sub.id}; {delivery.state}" + (f"; {error}" if error else ""),
            ),
        )
        return delivery.state


def deliver_due(
    sessions: Callable[[], Session],
    now: datetime,
    transport: httpx.BaseTransport | None = None,
    *,
    master: MasterKey,
    config: DeliveryConfig,
) -> DeliveryReport:
    """Send every delivery due at ``now``, subscription by subscription; each attempt's result
    is committed in a transaction of its own."""
    owner = new_id("dlr")
    report = DeliveryReport()
    seen: set[str] = set()
    with httpx.Client(
        transport=transport,
        timeout=config.timeout_seconds,
        follow_redirects=False,
        trust_env=False,
    ) as client:
        while (subscription_id := _claim(sessions, now, owner, config, seen)) is not None:
            report.webhooks.append(subscription_id)
            seen.add(subscription_id)
            try:
                for sent in range(config.batch + 1):
                    if sent == config.batch:
                        seen.discard(subscription_id)  # more is due: claim it again
                        break
                    attempt = _next(sessions, subscription_id, now, master, config)
                    if attempt is None:
                        break
                    if attempt.destination is None:
                        status, error = None, attempt.refusal
                    else:
                        status, error = _send(client, attempt, now)
                    report.attempted += 1
                    state = _settle(sessions, attempt, owner, now, status, error, config)
                    if state == DELIVERED:
                        report.delivered += 1
                    elif state == FAILED:
                        report.failed += 1
                    else:
                        report.retrying += 1
                        break  # in order: nothing later goes before this one
            finally:
                _release(sessions, subscription_id, owner)
    if report.attempted:
        log.info("webhook deliveries", extra={"fields": report.as_dict()})
    return report
