"""The auditor's API (scope ``audit:read``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import UnitOfWork, audited, require
from audit import queries
from core.context import RequestContext

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Auditor = Annotated[RequestContext, Depends(require("audit:read"))]


@router.get(
    "/events",
    summary="Audit events, oldest first, filtered and paginated",
    dependencies=[Depends(audited("audit.read", "audit_log"))],
)
def list_events(
    session: UnitOfWork,
    ctx: Auditor,
    since: datetime | None = None,
    until: datetime | None = None,
    organization: str | None = None,
    client: str | None = None,
    action: str | None = None,
    decision: str | None = None,
    agreement: str | None = None,
    after: Annotated[int | None, Query(ge=-1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    filters = queries.EventFilter(
        since=since,
        until=until,
        organization=organization,
        client=client,
        action=action,
        decision=decision,
        agreement=agreement,
    )
    items = queries.list_events(session, ctx, filters, after=after, limit=limit)
    return {"items": items, "next": items[-1]["index"] if len(items) == limit else None}
