"""Reading the log for auditors. Reading is itself audited, in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.models import AuditEvent
from audit.service import AuditRecord, entry_of, record
from core.context import RequestContext
from core.errors import PolicyDenied
from policy.engine import decide
from policy.model import Context, Resource


@dataclass(frozen=True)
class EventFilter:
    since: datetime | None = None
    until: datetime | None = None
    organization: str | None = None
    client: str | None = None
    action: str | None = None
    decision: str | None = None
    agreement: str | None = None


def list_events(
    session: Session, ctx: RequestContext, filters: EventFilter, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """Events matching ``filters`` with index greater than ``after``, oldest first."""
    assert ctx.principal is not None
    decision = decide(ctx.principal, "read_audit", Resource(), Context(), [], ctx.now)
    if not decision.permitted:
        raise PolicyDenied(decision.explanation, decision=decision)
    query = select(AuditEvent).order_by(AuditEvent.idx)
    if after is not None:
        query = query.where(AuditEvent.idx > after)
    if filters.since is not None:
        query = query.where(AuditEvent.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEvent.at < filters.until)
    if filters.organization is not None:
        query = query.where(AuditEvent.organization_id == filters.organization)
    if filters.client is not None:
        query = query.where(AuditEvent.client_id == filters.client)
    if filters.action is not None:
        query = query.where(AuditEvent.action == filters.action)
    if filters.decision is not None:
        query = query.where(AuditEvent.decision == filters.decision)
    rows: list[AuditEvent] = []
    # Agreement ids live inside a JSON list; filter them in Python, page by page.
    cursor = query
    while len(rows) < limit:
        batch = session.scalars(cursor.limit(limit * 4)).all()
        if not batch:
            break
        for row in batch:
            if filters.agreement is None or any(
                a.get("agreement") == filters.agreement for a in row.agreements
            ):
                rows.append(row)
                if len(rows) == limit:
                    break
        cursor = query.where(AuditEvent.idx > batch[-1].idx)
    record(
        session,
        ctx,
        AuditRecord(
            action="audit.read",
            resource_type="audit_log",
            decision=decision,
            counts={"returned": len(rows)},
        ),
    )
    return [{**entry_of(r), "leaf_hash": r.leaf_hash.hex()} for r in rows]
