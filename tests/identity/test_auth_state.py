"""Revocations and disabled clients reach every worker's in-memory view through the feed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import sessionmaker

from core.context import RequestContext
from core.db import make_engine
from identity import service
from identity.auth_state import AuthState, record_change
from identity.errors import AuthenticationFailed
from migrations.commands import upgrade


@pytest.fixture
def committed(fresh_databases):
    url = fresh_databases.url()
    upgrade(url)
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    ctx = RequestContext("t", datetime.now(UTC))
    with sessions() as s:
        service.create_organization(s, ctx, "p1", "Partner one", "partner")
        service.create_client(
            s, ctx, organization_id="p1", name="sis", role="partner-system", client_id="p1-sis"
        )
        s.commit()
    yield sessions
    engine.dispose()


def _claims(jti: str = "t-1") -> dict[str, object]:
    return {"client_id": "p1-sis", "jti": jti, "scope": "records:write"}


def test_a_second_worker_follows_a_disable_and_a_revocation(committed):
    now = lambda: datetime.now(UTC)  # noqa: E731
    worker_a, worker_b = AuthState(committed, now), AuthState(committed, now)
    worker_a.load()
    worker_b.load()
    assert worker_b.principal(_claims()).organization_id == "p1"

    with committed() as s:
        record_change(s, "revoke", "t-1", now(), now() + timedelta(minutes=5))
        s.commit()
    worker_b.sync()
    with pytest.raises(AuthenticationFailed):
        worker_b.principal(_claims("t-1"))
    assert worker_b.principal(_claims("t-2")).client_id == "p1-sis"

    with committed() as s:
        service.disable_client(s, RequestContext("t", now()), "p1-sis")
        s.commit()
    worker_b.sync()
    with pytest.raises(AuthenticationFailed):
        worker_b.principal(_claims("t-2"))


def test_the_background_follower_applies_changes_within_its_interval(committed):
    now = lambda: datetime.now(UTC)  # noqa: E731
    worker = AuthState(committed, now)
    worker.load()
    worker.start(0.05)
    try:
        with committed() as s:
            service.disable_client(s, RequestContext("t", now()), "p1-sis")
            s.commit()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                worker.principal(_claims())
            except AuthenticationFailed:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the follower did not apply the change")
    finally:
        worker.stop()


def test_unknown_clients_are_refused_until_looked_up(committed):
    worker = AuthState(committed, lambda: datetime.now(UTC))
    with pytest.raises(AuthenticationFailed):
        worker.principal(_claims())
    worker.lookup_client("p1-sis")
    assert worker.knows("p1-sis")
    worker.lookup_client("nobody")
    assert not worker.knows("nobody")
