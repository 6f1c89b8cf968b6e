"""Delivery: signed as Standard Webhooks says, retried with backoff, failed, replayed, in order,
never redirected, and never to an address the administrator has not allowed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from audit.models import AuditEvent
from notifications import service
from notifications.addresses import AddressPolicy
from notifications.delivery import DeliveryConfig, deliver_due
from notifications.events import EventType
from notifications.models import WebhookDelivery
from notifications.service import emit
from tests.conftest import MASTER
from tests.notifications.helpers import config, demo_terms, manager, subscribe
from tests.notifications.receiver import Receiver, closed_port

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


def _emit(session: Session, n: int = 1) -> list[str]:
    terms = demo_terms(session)
    ids = [
        emit(
            session,
            EventType.RELEASE_PUBLISHED,
            {"release": f"rel_{i}"},
            now=NOW,
            agreements=[terms],
        ).id
        for i in range(n)
    ]
    session.commit()
    return ids


def test_a_delivery_is_signed_as_the_specification_says(
    session: Session, sessions: sessionmaker[Session]
) -> None:
    with Receiver() as rx:
        made = subscribe(session, rx.url + "/hook", ["release.published"])
        assert made.secret.startswith("whsec_")
        (event_id,) = _emit(session)
        report = deliver_due(sessions, NOW, master=MASTER, config=config())
        assert (report.attempted, report.delivered) == (1, 1)
    (got,) = rx.received
    assert got.path == "/hook"
    assert got.headers["webhook-id"] == event_id
    assert got.headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert got.headers["host"] == f"127.0.0.1:{rx.port}"
    # The specification's algorithm, written out: HMAC-SHA256 of "id.timestamp.body" under the
    # base64-decoded secret, base64, prefixed with "v1,".
    key = base64.b64decode(made.secret.removeprefix("whsec_"))
    signed = f"{event_id}.{got.headers['webhook-timestamp']}.".encode() + got.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert got.headers["webhook-signature"] == expected
    # And as a receiver verifies it, with the reference library (its clock: NOW is "now").
    wh = Webhook(made.secret)
    assert wh.sign(event_id, NOW, got.body) == expected
    payload = json.loads(got.body)
    assert payload["type"] == "release.published"
    assert payload["data"] == {"release": "rel_0"}
    tampered = got.body.replace(b"rel_0", b"rel_1")
    assert wh.sign(event_id, NOW, tampered) != expected
    row = _delivery(session, made.subscription.id)
    assert (row.state, row.attempts, row.last_status_code) == ("delivered", 1, 204)


def _delivery(session: Session, subscription_id: str) -> WebhookDelivery:
    from sqlalchemy import select

    row = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    ).one()
    session.refresh(row)
    return row


def test_a_receiver_that_is_down_is_retried_with_backoff_then_failed_then_replayed(
    session: Session, sessions: sessionmaker[Session]
) -> None:
    port = closed_port()
    made = subscribe(session, f"http://127.0.0.1:{port}/hook", ["release.published"])
    _emit(session)
    cfg = config(max_attempts=3, backoff_seconds=10)
    at = NOW
    waits = []
    for attempt in range(1, 4):
        report = deliver_due(sessions, at, master=MASTER, config=cfg)
        assert report.attempted == 1, attempt
        row = _delivery(session, made.subscription.id)
        assert row.attempts == attempt
        assert "could not connect" in (row.last_error or "")
        if attempt < 3:
            assert row.state == "pending"
            assert row.next_attempt_at is not None
            waits.append(row.next_attempt_at - at)
            # Not before it is due.
            assert deliver_due(sessions, at, master=MASTER, config=cfg).attempted == 0
            at = row.next_attempt_at
    assert waits == [timedelta(seconds=10), timedelta(seconds=20)]  # exponential
    assert row.state == "failed" and row.next_attempt_at is None
    assert deliver_due(sessions, at + timedelta(days=1), master=MASTER, config=cfg).attempted == 0

    # The receiver is back: a replay delivers, with the same webhook-id.
    with Receiver() as rx:
        made.subscription.url = rx.url + "/hook"
        session.commit()
        service.replay(session, manager(now=at), made.subscription.id, row.id)
        session.commit()
        report = deliver_due(sessions, at, master=MASTER, config=cfg)
        assert report.delivered == 1
    assert len(rx.received) == 1
    row = _delivery(session, made.subscription.id)
    assert row.state == "delivered"
    assert session.query(AuditEvent).filter(AuditEvent.action == "webhook.replay").count() >= 1
    # A delivered one can be replayed again; a pending one cannot.
    service.replay(session, manager(now=at), made.subscription.id, row.id)
    with pytest.raises(service.DeliveryNotReplayable):
        service.replay(session, manager(now=at), made.subscription.id, row.id)


def test_a_later_event_waits_for_an_earlier_one(
    session: Session, sessions: sessionmaker[Session]
) -> None:
    with Receiver(status=lambda n: 500 if n == 0 else 200) as rx:
        made = subscribe(session, rx.url + "/hook", ["release.published"])
        first, second = _emit(session, 2)
        report = deliver_due(sessions, NOW, master=MASTER, config=config(backoff_seconds=5))
        # The first failed once: the second was not sent before it.
        assert (report.attempted, report.retrying, report.delivered) == (1, 1, 0)
        report = deliver_due(sessions, NOW + timedelta(seconds=5), master=MASTER, config=config())
        assert report.delivered == 2
    assert [r.headers["webhook-id"] for r in rx.received] == [first, first, second]
    assert made.subscription.id


def test_redirects_are_not_followed(session: Session, sessions: sessionmaker[Session]) -> None:
    with Receiver(
        status=lambda n: 307 if n == 0 else 204, location="http://169.254.169.254/"
    ) as rx:
        subscribe(session, rx.url + "/hook", ["release.published"])
        _emit(session)
        report = deliver_due(sessions, NOW, master=MASTER, config=config(max_attempts=1))
    assert report.failed == 1 and len(rx.received) == 1


def test_the_address_is_checked_again_at_delivery(
    session: Session, sessions: sessionmaker[Session]
) -> None:
    """A name that resolved to a public address at registration and to loopback when the
    delivery is due (DNS rebinding) is refused then, and nothing is sent."""
    with Receiver() as rx:
        made = service.register(
            session,
            manager(),
            MASTER,
            AddressPolicy.parse("", own=[]),
            url="https://hooks.example.org/hook",
            event_types=["release.published"],
            resolver=lambda host, port: ["93.184.216.34"],
        )
        _emit(session)
        rebound = DeliveryConfig(
            allow=AddressPolicy.parse("", own=[]),
            max_attempts=1,
            resolver=lambda host, port: ["127.0.0.1"],
        )
        report = deliver_due(sessions, NOW, master=MASTER, config=rebound)
    assert report.failed == 1 and rx.received == []
    row = _delivery(session, made.subscription.id)
    assert "loopback" in (row.last_error or "")


def test_a_deleted_webhook_gets_nothing_more(
    session: Session, sessions: sessionmaker[Session]
) -> None:
    with Receiver() as rx:
        made = subscribe(session, rx.url + "/hook", ["release.published"])
        _emit(session)
        service.delete(session, manager(), made.subscription.id)
        session.commit()
        assert deliver_due(sessions, NOW, master=MASTER, config=config()).attempted == 0
    assert rx.received == []
    assert _delivery(session, made.subscription.id).state == "cancelled"


def test_the_request_goes_to_the_address_that_was_checked(
    session: Session, sessions: sessionmaker[Session]
) -> None:
    """https to a name: connected to the checked address, with the name as Host and for TLS
    (SNI and certificate), so the name is not resolved a second time."""
    import httpx

    public = AddressPolicy.parse("", own=[])
    resolver = lambda host, port: ["93.184.216.34"]  # noqa: E731
    made = service.register(
        session,
        manager(),
        MASTER,
        public,
        url="https://hooks.example.org/in?x=1",
        event_types=["release.published"],
        resolver=resolver,
    )
    _emit(session)
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    report = deliver_due(
        sessions,
        NOW,
        httpx.MockTransport(answer),
        master=MASTER,
        config=DeliveryConfig(allow=public, resolver=resolver),
    )
    assert report.delivered == 1
    (request,) = seen
    assert str(request.url) == "https://93.184.216.34/in?x=1"
    assert request.headers["host"] == "hooks.example.org"
    assert request.extensions["sni_hostname"] == "hooks.example.org"
    assert _delivery(session, made.subscription.id).state == "delivered"


def test_the_deliverer_reads_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each documented BACKBONE_WEBHOOK_* setting reaches the deliverer (the CLI builds its
    configuration with DeliveryConfig.from_settings)."""
    from core.settings import Settings

    for name, value in {
        "BACKBONE_WEBHOOK_ALLOW_HOSTS": "hooks.internal, 10.1.0.0/16",
        "BACKBONE_WEBHOOK_TIMEOUT_SECONDS": "2.5",
        "BACKBONE_WEBHOOK_MAX_ATTEMPTS": "3",
        "BACKBONE_WEBHOOK_BACKOFF_SECONDS": "7",
    }.items():
        monkeypatch.setenv(name, value)
    cfg = DeliveryConfig.from_settings(Settings())
    assert (cfg.timeout_seconds, cfg.max_attempts, cfg.backoff_seconds) == (2.5, 3, 7.0)
    assert cfg.backoff(3) == timedelta(seconds=28)
    assert "hooks.internal" in cfg.allow.hosts
    assert any(str(n) == "10.1.0.0/16" for n in cfg.allow.networks)
