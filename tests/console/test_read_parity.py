"""A page and the JSON route behind the same service leave the same audit event (DESIGN
invariant 9): before this, the console audited listings the API did not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from audit.models import AuditEvent
from tests.console.conftest import sign_in


def _count(sessions: Any) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)) or 0)


# A page and the JSON route behind the same service: (page, person, route, client).
SAME_READ = [
    ("/console/agreements", "dana.district", "/v1/agreements", "district-data-manager"),
    ("/console/budgets", "dana.district", "/v1/budgets", "district-data-manager"),
    ("/console/admin/organizations", "ada.admin", "/v1/organizations", "backbone-admin"),
    ("/console/admin/clients", "ada.admin", "/v1/clients", "backbone-admin"),
]


def _events(sessions: Any, start: int, end: int) -> list[tuple[str, str | None, str]]:
    with sessions() as s:
        rows = s.scalars(
            select(AuditEvent)
            .where(AuditEvent.idx >= start, AuditEvent.idx < end)
            .order_by(AuditEvent.idx)
        ).all()
        return [(e.action, e.resource_type, json.dumps(e.counts, sort_keys=True)) for e in rows]


@pytest.mark.parametrize(("page", "person", "route", "client_id"), SAME_READ)
def test_a_page_leaves_the_event_its_json_route_leaves(
    client, clock, api, sessions, demo_people, page, person, route, client_id
):
    api.token(client_id)
    assert sign_in(client, clock, demo_people[person]).status_code == 303
    start = _count(sessions)
    assert client.get(page).status_code == 200
    middle = _count(sessions)
    assert api.get(route, client_id).status_code == 200
    end = _count(sessions)
    from_page = _events(sessions, start, middle)
    from_route = _events(sessions, middle, end)
    assert from_route, "the JSON route left no event"
    assert from_page == from_route
