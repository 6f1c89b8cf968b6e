"""Shared helpers of the notification tests."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from agreements import repository as agreement_repo
from agreements.service import terms_of
from core.context import RequestContext
from notifications import service
from notifications.addresses import AddressPolicy
from notifications.delivery import DeliveryConfig
from policy.model import AgreementTerms, Principal
from tests.conftest import MASTER

LOCAL = AddressPolicy.parse("127.0.0.1", own=[])
DISTRICT_AGREEMENT = "district-early-learning-outcomes"


def manager(org: str = "district", now: datetime | None = None) -> RequestContext:
    return RequestContext(
        "test",
        now or datetime.now(UTC),
        Principal(f"{org}-data-manager", org, "partner", frozenset({"agreements:approve"})),
    )


def subscribe(
    session: Session, url: str, events: list[str], org: str = "district"
) -> service.Registered:
    return service.register(session, manager(org), MASTER, LOCAL, url=url, event_types=events)


def demo_terms(session: Session, agreement_id: str = DISTRICT_AGREEMENT) -> AgreementTerms:
    rows = agreement_repo.versions(session, agreement_id)
    return terms_of(rows[-1])


def config(**kw: object) -> DeliveryConfig:
    return DeliveryConfig(allow=LOCAL, timeout_seconds=2.0, **kw)  # type: ignore[arg-type]
