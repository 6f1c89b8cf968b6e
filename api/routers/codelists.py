"""Shared code lists: the backbone defines them; every authenticated caller reads them.

Defining a code list takes ``indicators:write``: the scope with which the backbone defines what
the initiative measures (only a backbone organization may hold it). Code lists are not
sensitive, so any authenticated client reads them; every read is audited like other reads.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from agreements import codelist_service as service
from agreements.codelists import SLUG, CodeListIn
from agreements.models import CodeList
from api.deps import UnitOfWork, audited, require
from api.schemas import MAX_VERSION, CodeListOut, CodeListSummaryOut
from audit.actions import AuditAction
from core.context import RequestContext

router = APIRouter(prefix="/v1", tags=["code lists"])
Writer = Annotated[RequestContext, Depends(require("indicators:write", write=True))]
Reader = Annotated[RequestContext, Depends(require())]
CodeListId = Annotated[str, Path(pattern=rf"^{SLUG}$")]
Version = Annotated[int, Path(ge=1, le=MAX_VERSION)]


def _summary(row: CodeList) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "version": row.version,
        "ref": f"{row.id}@{row.version}",
        "title": row.title,
        "kind": row.kind,
        "code_count": row.code_count,
        "content_hash": row.content_hash,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
    }
    if row.standard is not None:
        out["standard"] = row.standard
    return out


def _document(row: CodeList) -> dict[str, Any]:
    out = _summary(row)
    if row.description is not None:
        out["description"] = row.description
    out["codes"] = row.codes
    return out


@router.post(
    "/codelists",
    response_model=CodeListOut,
    response_model_exclude_unset=True,
    status_code=201,
    summary="Define a code list, or its next version",
    dependencies=[Depends(audited(AuditAction.CODELIST_CREATE, "codelist"))],
)
def create_codelist(body: CodeListIn, session: UnitOfWork, ctx: Writer) -> dict[str, Any]:
    return _document(service.create(session, ctx, body))


@router.get(
    "/codelists",
    response_model=list[CodeListSummaryOut],
    response_model_exclude_unset=True,
    summary="The latest version of every code list",
    dependencies=[Depends(audited(AuditAction.CODELIST_READ, "codelist"))],
)
def list_codelists(session: UnitOfWork, ctx: Reader) -> list[dict[str, Any]]:
    return [_summary(row) for row in service.list_latest(session, ctx)]


@router.get(
    "/codelists/{codelist_id}",
    response_model=CodeListOut,
    response_model_exclude_unset=True,
    summary="The latest version of a code list",
    dependencies=[Depends(audited(AuditAction.CODELIST_READ, "codelist", "codelist_id"))],
)
def get_codelist(codelist_id: CodeListId, session: UnitOfWork, ctx: Reader) -> dict[str, Any]:
    return _document(service.get(session, ctx, codelist_id))


@router.get(
    "/codelists/{codelist_id}/versions/{version}",
    response_model=CodeListOut,
    response_model_exclude_unset=True,
    summary="One version of a code list",
    dependencies=[Depends(audited(AuditAction.CODELIST_READ, "codelist", "codelist_id"))],
)
def get_codelist_version(
    codelist_id: CodeListId, version: Version, session: UnitOfWork, ctx: Reader
) -> dict[str, Any]:
    return _document(service.get(session, ctx, codelist_id, version))
