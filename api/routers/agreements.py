"""Agreements: drafting, approval, lifecycle, and the published schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from agreements import codelist_service, service
from agreements import repository as repo
from agreements.document import AgreementDocument, vocabulary_summary
from agreements.lint import lint
from agreements.models import AgreementVersion
from agreements.odrl import to_odrl
from agreements.parse import parse_document
from api.deps import Policy, UnitOfWork, audited, require, state
from api.schemas import (
    MAX_VERSION,
    AgreementOut,
    AgreementSummaryOut,
    ApprovalIn,
    GoverningOut,
    JsonSchemaOut,
    LintOut,
    OdrlOut,
    StatusChangeIn,
    VersionDocumentOut,
    VersionOut,
)
from audit.actions import AuditAction
from audit.service import record_listing
from core.context import RequestContext
from core.errors import InvalidInput, NotFound, PolicyDenied, UnsupportedMediaType
from policy.engine import decide
from policy.explain import explanation
from policy.model import Context, Resource
from policy.vocabulary import is_steward

router = APIRouter(prefix="/v1", tags=["agreements"])
Reader = Annotated[RequestContext, Depends(require("agreements:read"))]
Writer = Annotated[RequestContext, Depends(require("agreements:write", write=True))]
Approver = Annotated[RequestContext, Depends(require("agreements:approve", write=True))]


def _version_out(
    row: AgreementVersion, now: datetime, approvals: list[str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "agreement": row.agreement_id,
        "version": row.version,
        "status": service.effective_status(row, now),
        "content_hash": row.content_hash,
        "effective": row.effective_at.isoformat(),
        "expires": row.expires_at.isoformat(),
        "created_at": row.created_at.isoformat(),
        "activated_at": row.activated_at.isoformat() if row.activated_at else None,
        "ended_at": row.ended_at.isoformat() if row.ended_at else None,
    }
    if approvals is not None:
        out["approved_by"] = approvals
        out["awaiting"] = sorted(row.document_parties() - set(approvals))
    return out


def _check_read(ctx: RequestContext, policy: Any, agreement_id: str) -> None:
    assert ctx.principal is not None
    decision = decide(
        ctx.principal,
        "read_agreement",
        Resource(agreement_id=agreement_id),
        Context(),
        policy,
        ctx.now,
    )
    if not decision.permitted:
        raise PolicyDenied(explanation(decision), decision=decision)


def _format(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return "json"
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
        return "yaml"
    raise UnsupportedMediaType("Send the agreement as application/yaml or application/json.")


@router.get(
    "/agreements/schema",
    response_model=JsonSchemaOut,
    response_model_exclude_unset=True,
    summary="JSON Schema of the agreement document, and its vocabulary",
)
def agreement_schema(ctx: Reader) -> dict[str, Any]:
    schema = AgreementDocument.model_json_schema(by_alias=True)
    schema["$id"] = "/v1/agreements/schema"
    schema["x-vocabulary"] = vocabulary_summary()
    return schema


@router.post(
    "/agreements",
    response_model=VersionOut,
    response_model_exclude_unset=True,
    status_code=201,
    summary="Draft an agreement or an amendment (YAML or JSON)",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_CREATE, "agreement"))],
)
async def create_agreement(request: Request, session: UnitOfWork, ctx: Writer) -> dict[str, Any]:
    fmt = _format(request)
    raw = await request.body()

    k_floor = state(request).settings.k_floor

    def run() -> dict[str, Any]:
        document = parse_document(raw, fmt)
        row = service.create(session, ctx, document, k_floor=k_floor)
        return _version_out(row, ctx.now, [])

    return await run_in_threadpool(run)


@router.get(
    "/agreements/{agreement_id}/odrl",
    response_model=OdrlOut,
    response_model_exclude_unset=True,
    summary="The agreement as ODRL 2.2 JSON-LD",
)
def get_odrl(
    agreement_id: str,
    session: UnitOfWork,
    ctx: Reader,
    policy: Policy,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> JSONResponse:
    agreement = repo.get(session, agreement_id)
    if agreement is None:
        raise NotFound("No such agreement.")
    _check_read(ctx, policy, agreement_id)
    row = repo.get_version(session, agreement_id, version or agreement.latest_version)
    if row is None:
        raise NotFound("No such agreement version.")
    document = AgreementDocument.model_validate(row.document)
    body = to_odrl(
        document,
        version=row.version,
        status=service.effective_status(row, ctx.now),
        content_hash=row.content_hash,
        codelists=service.codelists_of(row),
    )
    service.record_read(session, ctx, agreement_id, f"odrl of version {row.version}")
    return JSONResponse(body, media_type="application/ld+json")


@router.get(
    "/agreements/{agreement_id}/governing",
    response_model=GoverningOut,
    response_model_exclude_unset=True,
    summary="The version that governed a moment",
)
def governing(
    agreement_id: str, session: UnitOfWork, ctx: Reader, policy: Policy, at: datetime | None = None
) -> dict[str, Any]:
    _check_read(ctx, policy, agreement_id)
    moment = at or ctx.now
    if moment.tzinfo is None:
        raise InvalidInput("Give the moment with a time zone, e.g. 2026-01-31T12:00:00Z.")
    row = service.governing_version(session, agreement_id, moment)
    version = None if row is None else _version_out(row, moment)
    service.record_read(session, ctx, agreement_id, "governing version")
    return {"agreement": agreement_id, "at": moment.isoformat(), "version": version}


@router.post(
    "/agreements/lint",
    response_model=LintOut,
    response_model_exclude_unset=True,
    summary="Lint an agreement document without storing it",
)
async def lint_agreement(request: Request, ctx: Reader, session: UnitOfWork) -> dict[str, Any]:
    fmt = _format(request)
    raw = await request.body()
    k_floor = state(request).settings.k_floor

    def run() -> dict[str, Any]:
        document = parse_document(raw, fmt)
        catalog = codelist_service.catalog_for(session, document)
        findings = [f.as_dict() for f in lint(document, k_floor=k_floor, codelists=catalog)]
        return {"uid": document.uid, "content_hash": document.content_hash(), "findings": findings}

    return await run_in_threadpool(run)


@router.get(
    "/agreements",
    response_model=list[AgreementSummaryOut],
    response_model_exclude_unset=True,
    summary="Agreements your organization is party to",
)
def list_agreements(session: UnitOfWork, ctx: Reader) -> list[dict[str, Any]]:
    assert ctx.principal is not None
    steward = is_steward(ctx.principal.organization_kind)
    out = []
    for agreement in repo.visible_to(session, None if steward else ctx.principal.organization_id):
        versions = repo.versions(session, agreement.id)
        out.append(
            {
                "id": agreement.id,
                "title": agreement.title,
                "latest_version": agreement.latest_version,
                "versions": [
                    {"version": v.version, "status": service.effective_status(v, ctx.now)}
                    for v in versions
                ],
            }
        )
    record_listing(session, ctx, AuditAction.AGREEMENT_READ, "agreement", len(out))
    return out


@router.get(
    "/agreements/{agreement_id}",
    response_model=AgreementOut,
    response_model_exclude_unset=True,
    summary="An agreement with all its versions",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_READ, "agreement", "agreement_id"))],
)
def get_agreement(
    agreement_id: str, session: UnitOfWork, ctx: Reader, policy: Policy
) -> dict[str, Any]:
    agreement = repo.get(session, agreement_id)
    if agreement is None:
        raise NotFound("No such agreement.")
    _check_read(ctx, policy, agreement_id)
    versions = []
    for row in repo.versions(session, agreement_id):
        approvals = [a.organization_id for a in repo.approvals(session, agreement_id, row.version)]
        versions.append(_version_out(row, ctx.now, sorted(approvals)))
    history = [
        {
            "version": h.version,
            "status": h.status,
            "at": h.at.isoformat(),
            "by": h.by_organization_id,
        }
        for h in repo.status_history(session, agreement_id)
    ]
    service.record_read(session, ctx, agreement_id, "versions")
    return {"id": agreement.id, "title": agreement.title, "versions": versions, "history": history}


@router.get(
    "/agreements/{agreement_id}/versions/{version}",
    response_model=VersionDocumentOut,
    response_model_exclude_unset=True,
    summary="One version's document",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_READ, "agreement", "agreement_id"))],
)
def get_version(
    agreement_id: str,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    session: UnitOfWork,
    ctx: Reader,
    policy: Policy,
) -> dict[str, Any]:
    row = repo.get_version(session, agreement_id, version)
    if row is None:
        raise NotFound("No such agreement version.")
    _check_read(ctx, policy, agreement_id)
    approvals = [a.organization_id for a in repo.approvals(session, agreement_id, version)]
    service.record_read(session, ctx, agreement_id, f"version {version}")
    return {**_version_out(row, ctx.now, sorted(approvals)), "document": row.document}


@router.post(
    "/agreements/{agreement_id}/approve",
    response_model=VersionOut,
    response_model_exclude_unset=True,
    summary="Approve a version for your organization",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_APPROVE, "agreement", "agreement_id"))],
)
def approve(
    agreement_id: str, body: ApprovalIn, session: UnitOfWork, ctx: Approver
) -> dict[str, Any]:
    row = service.approve(session, ctx, agreement_id, body.version, body.content_hash)
    approvals = [a.organization_id for a in repo.approvals(session, agreement_id, row.version)]
    return _version_out(row, ctx.now, sorted(approvals))


def _status_route(action: str):  # type: ignore[no-untyped-def]
    def route(
        agreement_id: str, session: UnitOfWork, ctx: Approver, body: StatusChangeIn | None = None
    ) -> dict[str, Any]:
        row = service.change_status(
            session, ctx, agreement_id, action, body.reason if body else None
        )
        return _version_out(row, ctx.now)

    return route


for _action in ("suspend", "resume", "terminate"):
    router.add_api_route(
        f"/agreements/{{agreement_id}}/{_action}",
        _status_route(_action),
        methods=["POST"],
        response_model=VersionOut,
        response_model_exclude_unset=True,
        summary=f"{_action.capitalize()} the agreement (takes effect on the next request)",
        dependencies=[
            Depends(audited(AuditAction(f"agreement.{_action}"), "agreement", "agreement_id"))
        ],
    )
