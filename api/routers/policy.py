"""What-if policy decisions: "what would happen if this client did this", without doing it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from aggregation.impact import breaking_indicators
from agreements import codelist_service
from agreements import service as agreements
from agreements.parse import document_from_data
from api.deps import Policy, UnitOfWork, audited, require, state
from api.schemas import DecideIn, DecisionOut
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import InvalidInput, NotFound, ObjectAccessDenied
from identity.models import Client, Organization
from policy.engine import decide
from policy.explain import decision_document
from policy.model import Context, Principal, Resource
from policy.vocabulary import OrganizationKind

router = APIRouter(prefix="/v1/policy", tags=["agreements"])
Reader = Annotated[RequestContext, Depends(require("agreements:read"))]


def _principal(session: Any, ctx: RequestContext, client_id: str | None) -> Principal:
    assert ctx.principal is not None
    if client_id is None or client_id == ctx.principal.client_id:
        return ctx.principal
    client = session.get(Client, client_id)
    if client is None:
        raise NotFound("No such client.")
    if (
        client.organization_id != ctx.principal.organization_id
        and ctx.principal.organization_kind != OrganizationKind.BACKBONE
    ):
        raise ObjectAccessDenied("You may ask about your own organization's clients only.")
    org = session.get(Organization, client.organization_id)
    return Principal(client.id, client.organization_id, org.kind if org else "", client.scope_set)


@router.post(
    "/decide",
    response_model=DecisionOut,
    response_model_exclude_unset=True,
    summary="Decide without acting; optionally evaluate a draft agreement and what it would break",
    dependencies=[Depends(audited(AuditAction.POLICY_DECIDE, "policy"))],
)
def decide_what_if(
    body: DecideIn, request: Request, session: UnitOfWork, ctx: Reader, policy: Policy
) -> dict[str, Any]:
    principal = _principal(session, ctx, body.client_id)
    now = body.at or ctx.now
    if now.tzinfo is None:
        raise InvalidInput("Give 'at' with a time zone, e.g. 2026-01-31T12:00:00Z.")
    evaluated = policy
    impact: list[dict[str, Any]] | None = None
    if body.draft is not None:
        document = document_from_data(body.draft)
        agreements.check(
            document,
            k_floor=state(request).settings.k_floor,
            catalog=codelist_service.catalog_for(session, document),
        )
        evaluated = agreements.with_draft(session, policy, document)
        impact = breaking_indicators(session, policy, evaluated, now)
    r = body.resource
    resource = Resource(
        datasets=tuple(r.datasets),
        agreement_id=r.agreement,
        fields=frozenset(r.fields) if r.fields is not None else None,
        dimensions=frozenset(r.dimensions) if r.dimensions is not None else None,
        geography=r.geography,
        method=r.method,
        linked_datasets=frozenset(r.linked_datasets),
        cohort_datasets=frozenset(r.cohort_datasets),
    )
    context = Context(
        purpose=body.context.purpose,
        recipients=frozenset(body.context.recipients)
        if body.context.recipients is not None
        else None,
    )
    decision = decide(principal, body.action, resource, context, evaluated, now)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.POLICY_DECIDE,
            resource_type="policy",
            resource_id=body.action[:64],
            decision=decision,
            purpose=body.context.purpose,
            detail="what-if" + (" with a draft agreement" if body.draft is not None else ""),
        ),
    )
    out: dict[str, Any] = {
        "principal": principal.client_id,
        "at": now.isoformat(),
        "decision": decision_document(decision),
    }
    if impact is not None:
        out["breaks"] = impact
    return out
