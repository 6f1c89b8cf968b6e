"""The outbox: events are written in the transaction of what they report, to the right parties,
and a ``notify`` obligation's party has the notification recorded even without a webhook."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notifications.events import EventType, audience
from notifications.models import NotificationEvent, WebhookDelivery
from notifications.service import emit
from policy.model import Constraint, Rule
from tests.notifications.helpers import demo_terms, subscribe

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


def _count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_rolled_back_event_notifies_nothing(session: Session) -> None:
    subscribe(session, "http://127.0.0.1:9/hook", ["release.published"])
    terms = demo_terms(session)
    events, deliveries = _count(session, NotificationEvent), _count(session, WebhookDelivery)
    with session.begin_nested() as nested:
        emit(
            session, EventType.RELEASE_PUBLISHED, {"release": "rel_x"}, now=NOW, agreements=[terms]
        )
        assert _count(session, WebhookDelivery) == deliveries + 1
        nested.rollback()
    assert _count(session, NotificationEvent) == events
    assert _count(session, WebhookDelivery) == deliveries
    # Committed with the event, it is there to deliver.
    event = emit(
        session, EventType.RELEASE_PUBLISHED, {"release": "rel_y"}, now=NOW, agreements=[terms]
    )
    session.commit()
    rows = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.event_seq == event.seq)
    ).all()
    assert [(r.organization_id, r.state) for r in rows] == [("district", "pending")]


def test_only_parties_subscribed_to_the_type_are_told(session: Session) -> None:
    terms = demo_terms(session)  # district and backbone
    mine = subscribe(session, "http://127.0.0.1:9/a", ["submission.accepted"]).subscription
    subscribe(session, "http://127.0.0.1:9/b", ["release.published"])  # another type
    outsider = subscribe(session, "http://127.0.0.1:9/c", ["submission.accepted"], org="health")
    event = emit(
        session, EventType.SUBMISSION_ACCEPTED, {"submission": "sub_x"}, now=NOW, agreements=[terms]
    )
    rows = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.event_seq == event.seq)
    ).all()
    assert [r.subscription_id for r in rows] == [mine.id]
    assert outsider.subscription.id not in {r.subscription_id for r in rows}
    # recipients narrows the parties (an agreement awaiting only some parties' approval).
    event = emit(
        session,
        EventType.SUBMISSION_ACCEPTED,
        {"submission": "sub_y"},
        now=NOW,
        agreements=[terms],
        recipients={"backbone"},
    )
    assert not session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.event_seq == event.seq)
    ).all()


def _with_notify(terms, events, recipients, targets=frozenset({"*"})):  # type: ignore[no-untyped-def]
    duty = Rule(
        id="tell",
        kind="obligation",
        action="notify",
        targets=frozenset(targets),
        assignees=frozenset({"backbone"}),
        constraints=(
            Constraint("event", "isAnyOf", tuple(events)),
            Constraint("recipient", "isAnyOf", tuple(recipients)),
        ),
    )
    return dataclasses.replace(terms, rules=(*terms.rules, duty))


def test_a_notify_obligation_is_recorded_for_a_party_without_a_webhook(session: Session) -> None:
    terms = _with_notify(demo_terms(session), ["release.published"], ["district"])
    ref = f"{terms.id}/v{terms.version}/tell"
    assert audience(EventType.RELEASE_PUBLISHED, [terms]).obligated == {"district": ref}
    assert audience(EventType.SUBMISSION_ACCEPTED, [terms]).obligated == {}
    event = emit(
        session, EventType.RELEASE_PUBLISHED, {"release": "rel_z"}, now=NOW, agreements=[terms]
    )
    rows = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.event_seq == event.seq)
    ).all()
    assert [(r.organization_id, r.state, r.obligation, r.subscription_id) for r in rows] == [
        ("district", "undeliverable", ref, None)
    ]
    # With a webhook for the event, the duty is carried out by a delivery to it.
    sub = subscribe(session, "http://127.0.0.1:9/d", ["release.published"]).subscription
    event = emit(
        session, EventType.RELEASE_PUBLISHED, {"release": "rel_w"}, now=NOW, agreements=[terms]
    )
    rows = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.event_seq == event.seq)
    ).all()
    assert [(r.subscription_id, r.state, r.obligation) for r in rows] == [(sub.id, "pending", ref)]


def test_a_notify_obligation_applies_to_its_target_datasets_only(session: Session) -> None:
    terms = _with_notify(
        demo_terms(session), ["submission.accepted"], ["district"], targets={"k3_attendance"}
    )
    assert (
        audience(EventType.SUBMISSION_ACCEPTED, [terms], ["kindergarten_readiness"]).obligated == {}
    )
    assert audience(EventType.SUBMISSION_ACCEPTED, [terms], ["k3_attendance"]).obligated
