"""Indicators and releases: definitions, release requests, and the dashboard read API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from aggregation import service
from aggregation.definition import IndicatorDefinition
from aggregation.models import Release
from api.deps import Policy, UnitOfWork, audited, require, state
from api.schemas import ReleaseIn
from core.context import RequestContext

router = APIRouter(prefix="/v1", tags=["indicators"])
Writer = Annotated[RequestContext, Depends(require("indicators:write", write=True))]
Reader = Annotated[RequestContext, Depends(require("indicators:read"))]


def _definition_out(version: int, definition: IndicatorDefinition) -> dict[str, Any]:
    return {"version": version, **definition.model_dump(mode="json", exclude_none=True)}


def _release_summary(release: Release) -> dict[str, Any]:
    return {
        "id": release.id,
        "indicator": release.indicator_id,
        "indicator_version": release.indicator_version,
        "method": release.method,
        "dimensions": release.dimensions,
        "parameters": release.parameters,
        "created_at": release.created_at.isoformat(),
        "audit_index": release.audit_index,
    }


def release_json(release: Release) -> dict[str, Any]:
    headers = [*release.dimensions, "numerator", "denominator", "value", "status"]
    rows = [[cell.get(h) for h in headers] for cell in release.cells]
    return {
        **_release_summary(release),
        "headers": [{"name": h} for h in headers],
        "rows": rows,
        "provenance": release.provenance,
    }


@router.post(
    "/indicators",
    status_code=201,
    summary="Define an indicator (checked against the agreements)",
    dependencies=[Depends(audited("indicator.define", "indicator"))],
)
def define_indicator(
    body: IndicatorDefinition, session: UnitOfWork, ctx: Writer, policy: Policy
) -> dict[str, Any]:
    row = service.define(session, ctx, policy, body)
    return _definition_out(row.version, IndicatorDefinition.model_validate(row.definition))


@router.get("/indicators", summary="Indicator definitions")
def list_indicators(session: UnitOfWork, ctx: Reader) -> list[dict[str, Any]]:
    return [_definition_out(v.version, d) for v, d in service.list_definitions(session)]


@router.get("/indicators/{indicator_id}", summary="One indicator definition")
def get_indicator(indicator_id: str, session: UnitOfWork, ctx: Reader) -> dict[str, Any]:
    version, definition = service.get_definition(session, indicator_id)
    return _definition_out(version.version, definition)


@router.post(
    "/indicators/{indicator_id}/releases",
    summary="Compute and publish a release",
    dependencies=[Depends(audited("release.create", "indicator", "indicator_id"))],
)
async def create_release(
    indicator_id: str,
    request: Request,
    session: UnitOfWork,
    ctx: Writer,
    policy: Policy,
    body: ReleaseIn | None = None,
) -> JSONResponse:
    st = state(request)
    req = service.ReleaseRequest(
        dimensions=tuple(body.dimensions) if body and body.dimensions is not None else None,
        method=body.method if body else None,
    )
    release, created = await run_in_threadpool(
        service.create_release, session, ctx, st.master, policy, indicator_id, req
    )
    return JSONResponse(
        release_json(release),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/releases/{release.id}"},
    )


@router.get("/indicators/{indicator_id}/releases", summary="Releases of an indicator")
def list_releases(indicator_id: str, session: UnitOfWork, ctx: Reader) -> list[dict[str, Any]]:
    service.get_definition(session, indicator_id)
    assert ctx.principal is not None
    org = ctx.principal.organization_id
    return [
        _release_summary(r)
        for r in service.list_releases(session, indicator_id)
        if org in r.recipients
    ]


@router.get(
    "/releases/{release_id}",
    summary="A release's cells (recipients only)",
    dependencies=[Depends(audited("release.read", "release", "release_id"))],
)
def get_release(
    release_id: str, session: UnitOfWork, ctx: Reader, policy: Policy
) -> dict[str, Any]:
    release, _decision = service.read_release(session, ctx, policy, release_id)
    return release_json(release)
