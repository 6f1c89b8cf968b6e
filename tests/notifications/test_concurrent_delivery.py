"""Two deliverers at once on PostgreSQL: every event reaches every subscription exactly once,
and in order per subscription."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from importlib import resources

import pytest
import yaml

from agreements.compile import compile_terms
from agreements.document import AgreementDocument
from core.db import make_engine, make_session_factory
from demo.seed import code_list_catalog, code_list_versions
from identity.models import Organization
from migrations.commands import upgrade
from notifications.delivery import deliver_due
from notifications.events import EventType
from notifications.service import emit
from tests.conftest import MASTER, FreshDatabase
from tests.notifications.helpers import config, subscribe
from tests.notifications.receiver import Receiver

CATALOG = code_list_catalog()
VERSIONS = code_list_versions()

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
EVENTS = 40
HOOKS = 4


@pytest.mark.postgres_only
def test_two_deliverers_deliver_each_event_once_and_in_order(
    fresh_databases: FreshDatabase,
) -> None:
    url = fresh_databases.url()
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    document = AgreementDocument.model_validate(
        yaml.safe_load((resources.files("demo") / "agreements" / "district.yaml").read_text())
    )
    terms = compile_terms(document, version=1, status="active", codelists=VERSIONS)
    # A receiver that is a little slow, so that the two deliverers overlap.
    with Receiver(status=lambda n: (time.sleep(0.002), 204)[1]) as rx:
        with sessions() as session:
            for org in ("district", "backbone"):
                session.add(Organization(id=org, name=org, kind="partner", created_at=NOW))
            session.flush()
            hooks = [
                subscribe(session, f"{rx.url}/h{i}", ["release.published"]).subscription.id
                for i in range(HOOKS)
            ]
            session.commit()
        emitted: list[str] = []
        for i in range(EVENTS):  # one transaction per event, as requests make them
            with sessions() as session:
                event = emit(
                    session,
                    EventType.RELEASE_PUBLISHED,
                    {"release": f"rel_{i}"},
                    now=NOW,
                    agreements=[terms],
                )
                session.commit()
                emitted.append(event.id)
        reports = []
        barrier = threading.Barrier(2)

        def run() -> None:
            barrier.wait()
            reports.append(deliver_due(sessions, NOW, master=MASTER, config=config(batch=7)))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    engine.dispose()
    by_hook: dict[str, list[str]] = defaultdict(list)
    for got in rx.received:
        by_hook[got.path].append(got.headers["webhook-id"])
    assert sorted(by_hook) == sorted(f"/h{i}" for i in range(HOOKS))
    for path, ids in by_hook.items():
        assert ids == emitted, path  # each once, in order
    assert sum(r.delivered for r in reports) == EVENTS * HOOKS
    # Both deliverers did some of the work (a lease, not one global lock).
    assert all(r.delivered for r in reports), [r.as_dict() for r in reports]
    assert len(hooks) == HOOKS
