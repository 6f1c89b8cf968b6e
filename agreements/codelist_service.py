"""Shared code lists: store a new version, read them, and resolve an agreement's references.

A code list version is immutable: a change is a new version (the next number), and an agreement
pins the version it refers to. Services flush and never commit; the request's unit of work
commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from agreements import codelist_repository as repo
from agreements.codelists import (
    CodeListCatalog,
    CodeListIn,
    ResolvedCodeList,
    parse_ref,
    references,
)
from agreements.document import AgreementDocument
from agreements.errors import CodeListConflict, InvalidAgreement
from agreements.models import CodeList
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import Forbidden, NotFound
from policy.vocabulary import OrganizationKind


def create(session: Session, ctx: RequestContext, body: CodeListIn) -> CodeList:
    """Store ``body`` as the next version of its code list (version 1 for a new id).

    Only the backbone defines the initiative's code lists; the same content as the latest
    version is refused (:class:`CodeListConflict`), so a version number always means a change."""
    if ctx.principal is None or ctx.principal.organization_kind != OrganizationKind.BACKBONE:
        raise Forbidden("Only the backbone organization defines the initiative's code lists.")
    content_hash = body.content_hash()
    latest = repo.latest_version(session, body.id)
    if latest is not None:
        previous = repo.get(session, body.id, latest)
        if previous is not None and previous.content_hash == content_hash:
            raise CodeListConflict(
                f"Version {latest} of code list {body.id} already has exactly this content."
            )
    row = CodeList(
        id=body.id,
        version=(latest or 0) + 1,
        title=body.title,
        description=body.description,
        standard=body.standard,
        kind=body.kind,
        codes=[c.model_dump(exclude_none=True) for c in body.codes],
        code_count=len(body.codes),
        content_hash=content_hash,
        created_at=ctx.now,
        created_by=ctx.principal.organization_id,
    )
    session.add(row)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.CODELIST_CREATE,
            resource_type="codelist",
            resource_id=f"{row.id}@{row.version}",
            counts={"codes": row.code_count},
        ),
    )
    return row


def _read(session: Session, ctx: RequestContext, resource_id: str | None) -> None:
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.CODELIST_READ, resource_type="codelist", resource_id=resource_id
        ),
    )


def list_latest(session: Session, ctx: RequestContext) -> Sequence[CodeList]:
    """The latest version of every code list (audited as a read)."""
    rows = repo.latest(session)
    _read(session, ctx, None)
    return rows


def get(
    session: Session, ctx: RequestContext, codelist_id: str, version: int | None = None
) -> CodeList:
    """One version of a code list, the latest when ``version`` is None (audited as a read)."""
    number = version if version is not None else repo.latest_version(session, codelist_id)
    row = repo.get(session, codelist_id, number) if number is not None else None
    if row is None:
        if version is not None and repo.latest_version(session, codelist_id) is not None:
            raise NotFound(f"Code list {codelist_id} has no version {version}.")
        raise NotFound("No such code list.")
    _read(session, ctx, f"{row.id}@{row.version}")
    return row


def resolved(row: CodeList) -> ResolvedCodeList:
    return ResolvedCodeList(
        id=row.id,
        version=row.version,
        title=row.title,
        kind=row.kind,
        codes=tuple(str(c["code"]) for c in row.codes),
        standard=row.standard,
    )


def catalog(session: Session, refs: set[str]) -> CodeListCatalog:
    """What lint needs to check ``refs``: the versions that exist and each id's latest."""
    found: dict[str, ResolvedCodeList] = {}
    latest: dict[str, int] = {}
    for ref in sorted(refs):
        try:
            slug, version = parse_ref(ref)
        except ValueError:
            continue
        newest = repo.latest_version(session, slug)
        if newest is None:
            continue
        latest[slug] = newest
        row = repo.get(session, slug, version)
        if row is not None:
            found[ref] = resolved(row)
    return CodeListCatalog(found, latest)


def catalog_for(session: Session, document: AgreementDocument) -> CodeListCatalog:
    return catalog(session, references(document))


def resolve(session: Session, document: AgreementDocument) -> Mapping[str, ResolvedCodeList]:
    """The code list versions ``document`` refers to; :class:`InvalidAgreement` naming each
    reference that does not resolve."""
    found = catalog_for(session, document).resolved
    missing = [
        {
            "code": "unknown-code-list",
            "path": f"datasets.{i}.fields.{j}.constraints.codelist",
            "message": f"Code list {f.constraints.codelist} does not exist.",
            "severity": "error",
        }
        for i, ds in enumerate(document.datasets)
        for j, f in enumerate(ds.fields)
        if f.constraints.codelist is not None and f.constraints.codelist not in found
    ]
    if missing:
        raise InvalidAgreement(
            f"The agreement refers to {len(missing)} code list(s) that do not exist; "
            "nothing was stored.",
            missing,
        )
    return found
