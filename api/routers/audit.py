"""The auditor's API (scope ``audit:read``), and what partners need to check their receipts.

Partners (``submissions:read``) may read checkpoints, consistency proofs and the inclusion proof of
their own organization's events; the public key is public. Everything else is for auditors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from api.deps import UnitOfWork, audited, require, state
from api.schemas import (
    MAX_INDEX,
    CheckpointOut,
    ConsistencyProofOut,
    EventPage,
    InclusionProofOut,
    PublicKeyOut,
)
from audit import export, queries
from audit.actions import AuditAction
from audit.checkpoints import as_json
from audit.note import LogSigner, origin_for, signer_for
from core.context import RequestContext
from identity.errors import InsufficientScope

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Auditor = Annotated[RequestContext, Depends(require("audit:read"))]
Authenticated = Annotated[RequestContext, Depends(require())]
Format = Literal["ndjson", "csv"]


def _auditor_or_partner(ctx: RequestContext) -> RequestContext:
    assert ctx.principal is not None
    if not ctx.principal.scopes & {queries.AUDITOR_SCOPE, queries.PARTNER_SCOPE}:
        raise InsufficientScope(frozenset({queries.AUDITOR_SCOPE}))
    return ctx


def _signer(request: Request) -> LogSigner:
    st = state(request)
    return signer_for(st.master, origin_for(st.settings.issuer))


def _wants(request: Request, media_type: str) -> bool:
    accept = request.headers.get("accept", "")
    return media_type in accept and "application/json" not in accept


def _filters(
    since: datetime | None = None,
    until: datetime | None = None,
    organization: Annotated[str | None, Query(max_length=64)] = None,
    client: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=65)] = None,
    decision: Literal["permit", "deny"] | None = None,
    outcome: Literal["succeeded", "denied", "rejected", "failed"] | None = None,
    agreement: Annotated[str | None, Query(max_length=64)] = None,
) -> queries.EventFilter:
    return queries.EventFilter(
        since=since,
        until=until,
        organization=organization,
        client=client,
        action=action,
        decision=decision,
        outcome=outcome,
        agreement=agreement,
    )


Filters = Annotated[queries.EventFilter, Depends(_filters)]


@router.get(
    "/events",
    response_model=EventPage,
    response_model_exclude_unset=True,
    summary="Audit events, oldest first, filtered and paginated",
    dependencies=[Depends(audited(AuditAction.AUDIT_READ, "audit_log"))],
)
def list_events(
    session: UnitOfWork,
    ctx: Auditor,
    filters: Filters,
    after: Annotated[
        int | None, Query(ge=-1, le=MAX_INDEX, description="the last index already seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    items = queries.list_events(session, ctx, filters, after=after, limit=limit)
    return {"items": items, "next": items[-1]["index"] if len(items) == limit else None}


@router.get(
    "/export",
    summary="Export the log up to a checkpoint as NDJSON or CSV (verify it with `backbone audit verify`)",
    dependencies=[Depends(audited(AuditAction.AUDIT_EXPORT, "audit_log"))],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The log's entries, one a line (NDJSON) or a CSV row",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
def export_log(
    request: Request,
    session: UnitOfWork,
    ctx: Auditor,
    filters: Filters,
    format: Format | None = None,
    tree_size: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
) -> StreamingResponse:
    fmt = format or ("csv" if _wants(request, "text/csv") else "ndjson")
    plan = export.plan(
        session, ctx, _signer(request), fmt=fmt, tree_size=tree_size, filters=filters
    )
    return StreamingResponse(
        export.stream(state(request).sessions, plan),
        media_type=plan.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{plan.filename}"',
            "Audit-Tree-Size": str(plan.tree_size),
        },
    )


@router.get(
    "/checkpoints/latest",
    response_model=CheckpointOut,
    response_model_exclude_unset=True,
    summary="The latest signed checkpoint (made now if the log has grown); text/plain: the note",
    dependencies=[Depends(audited(AuditAction.AUDIT_CHECKPOINT_READ, "audit_checkpoint"))],
)
def latest_checkpoint(request: Request, session: UnitOfWork, ctx: Authenticated) -> Response:
    signer = _signer(request)
    row = queries.latest_checkpoint(session, _auditor_or_partner(ctx), signer)
    if _wants(request, "text/plain"):
        return PlainTextResponse(row.note)
    return JSONResponse(as_json(row, signer.origin))


@router.get(
    "/checkpoints/{tree_size}",
    response_model=CheckpointOut,
    response_model_exclude_unset=True,
    summary="The checkpoint of one tree size, e.g. an export's (text/plain: the note)",
    dependencies=[
        Depends(audited(AuditAction.AUDIT_CHECKPOINT_READ, "audit_checkpoint", "tree_size"))
    ],
)
def checkpoint_at(
    request: Request,
    session: UnitOfWork,
    ctx: Authenticated,
    tree_size: Annotated[int, Path(ge=0, le=MAX_INDEX)],
) -> Response:
    signer = _signer(request)
    row = queries.checkpoint_at(session, _auditor_or_partner(ctx), tree_size)
    if _wants(request, "text/plain"):
        return PlainTextResponse(row.note)
    return JSONResponse(as_json(row, signer.origin))


@router.get(
    "/public-key",
    response_model=PublicKeyOut,
    response_model_exclude_unset=True,
    summary="The log's Ed25519 public key (JSON, or ?format=pem / vkey)",
)
def public_key(
    request: Request,
    format: Literal["json", "pem", "vkey"] = "json",
) -> Response:
    key = _signer(request).verifier
    if format == "pem":
        return PlainTextResponse(key.pem(), media_type="application/x-pem-file")
    if format == "vkey":
        return PlainTextResponse(key.vkey() + "\n")
    return JSONResponse(
        {
            "origin": key.name,
            "algorithm": "Ed25519",
            "key_id": key.vkey().split("+", 2)[1],
            "vkey": key.vkey(),
            "pem": key.pem(),
        }
    )


@router.get(
    "/proofs/inclusion",
    response_model=InclusionProofOut,
    response_model_exclude_unset=True,
    summary="Inclusion proof of an event (RFC 9162 PATH) against a tree size, with its entry",
    dependencies=[Depends(audited(AuditAction.AUDIT_PROOF_INCLUSION, "audit_event"))],
)
def inclusion_proof(
    request: Request,
    session: UnitOfWork,
    ctx: Authenticated,
    index: Annotated[int, Query(ge=0, le=MAX_INDEX)],
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None,
) -> dict[str, Any]:
    signer = _signer(request)
    return queries.inclusion_proof(
        session,
        _auditor_or_partner(ctx),
        signer,
        index=index,
        tree_size=tree_size,
    )


@router.get(
    "/proofs/consistency",
    response_model=ConsistencyProofOut,
    response_model_exclude_unset=True,
    summary="Consistency proof between two tree sizes (RFC 9162 PROOF)",
    dependencies=[Depends(audited(AuditAction.AUDIT_PROOF_CONSISTENCY, "audit_log"))],
)
def consistency_proof(
    request: Request,
    session: UnitOfWork,
    ctx: Authenticated,
    first: Annotated[int, Query(ge=1, le=MAX_INDEX)],
    second: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None,
) -> dict[str, Any]:
    signer = _signer(request)
    return queries.consistency_proof(
        session, _auditor_or_partner(ctx), signer, first=first, second=second
    )
