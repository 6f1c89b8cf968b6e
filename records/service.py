"""Submissions: accept a body under the governing agreement, store it encrypted, issue a receipt.

A submission is stored whole or not at all: nothing is written before the body has been parsed
and validated in full, and everything is written in the request's one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import Conflict, NotFound, PolicyDenied
from core.ids import new_id
from core.keys import MasterKey
from identity.errors import ObjectAccessDenied
from policy.engine import PolicySet, decide
from policy.model import Context, DatasetTerms, Decision, Resource
from records import intake, vault
from records.errors import IdempotencyConflict, SubmissionRejected
from records.models import Segment, Submission
from records.pseudonymize import linkage_key, pseudonymize
from records.validate import validate


@dataclass(frozen=True)
class Receipt:
    submission_id: str
    dataset: str
    agreement_id: str
    agreement_version: int
    row_count: int
    body_sha256: str
    received_at: datetime
    status: str
    audit_index: int | None
    replaces: str | None
    period: str | None

    @classmethod
    def of(cls, row: Submission) -> Receipt:
        return cls(
            submission_id=row.id,
            dataset=row.dataset,
            agreement_id=row.agreement_id,
            agreement_version=row.agreement_version,
            row_count=row.row_count,
            body_sha256=row.body_sha256,
            received_at=row.received_at,
            status=row.status,
            audit_index=row.audit_index,
            replaces=row.replaces_id,
            period=row.period,
        )


@dataclass(frozen=True)
class SubmissionRequest:
    dataset: str
    body: Path
    content_type: str | None
    content_encoding: str | None
    body_sha256: str
    limits: intake.IntakeLimits
    scratch: Path
    period: str | None = None
    replaces: str | None = None
    idempotency_key: str | None = None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _deny(decision: Decision) -> PolicyDenied:
    return PolicyDenied(decision.explanation, decision=decision)


def _governing_dataset(
    policy: PolicySet, decision: Decision, dataset: str
) -> tuple[str, int, DatasetTerms]:
    ref = decision.deciding_rules[0]
    for terms in policy.versions(ref.agreement_id):
        if terms.version == ref.version:
            ds = terms.dataset(dataset)
            if ds is not None:
                return terms.id, terms.version, ds
    raise NotFound("The dataset is not defined by the governing agreement.")  # pragma: no cover


def submit(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    policy: PolicySet,
    req: SubmissionRequest,
) -> tuple[Receipt, bool]:
    """Accept a submission. Returns the receipt and whether it was newly created (not replayed)."""
    assert ctx.principal is not None
    principal = ctx.principal
    if req.idempotency_key is not None:
        previous = session.scalars(
            select(Submission).where(
                Submission.client_id == principal.client_id,
                Submission.idempotency_key == req.idempotency_key,
            )
        ).first()
        if previous is not None:
            if previous.body_sha256 != req.body_sha256 or previous.dataset != req.dataset:
                raise IdempotencyConflict(
                    "This Idempotency-Key was already used for a different submission."
                )
            return Receipt.of(previous), False

    # May this client submit to this dataset at all? Decided before the body is parsed.
    decision = decide(
        principal, "submit", Resource(datasets=(req.dataset,)), Context(), policy, ctx.now
    )
    if not decision.permitted:
        raise _deny(decision)
    agreement_id, version, dataset = _governing_dataset(policy, decision, req.dataset)

    fmt = intake.media_format(req.content_type)
    body = intake.decompress(req.body, req.scratch, req.content_encoding, req.limits)
    frame = intake.read_frame(body, fmt, req.limits)

    decision = decide(
        principal,
        "submit",
        Resource(datasets=(req.dataset,), fields=frozenset(frame.columns)),
        Context(),
        policy,
        ctx.now,
    )
    if not decision.permitted:
        raise _deny(decision)
    typed, report = validate(frame, dataset)
    if typed is None:
        raise SubmissionRejected(
            f"{report.total} problem(s) found; nothing was stored.", report.as_dict()
        )
    del frame
    stored = pseudonymize(typed, dataset, linkage_key(master))
    del typed

    replaced: Submission | None = None
    if req.replaces is not None:
        replaced = session.get(Submission, req.replaces)
        if replaced is None or replaced.organization_id != principal.organization_id:
            raise NotFound("The submission to replace does not exist.")
        if replaced.dataset != req.dataset or replaced.status != "accepted":
            raise Conflict("Only an accepted submission of the same dataset can be replaced.")
        if replaced.period != req.period:
            raise Conflict(
                "A replacement must declare the same period as the submission it replaces."
            )

    submission = Submission(
        id=new_id("sub"),
        dataset=req.dataset,
        agreement_id=agreement_id,
        agreement_version=version,
        organization_id=principal.organization_id,
        client_id=principal.client_id,
        status="accepted",
        row_count=stored.height,
        body_sha256=req.body_sha256,
        content_type=fmt,
        period=req.period,
        replaces_id=replaced.id if replaced else None,
        idempotency_key=req.idempotency_key,
        received_at=ctx.now,
        columns=list(stored.columns),
    )
    session.add(submission)
    session.flush()
    vault.store_segment(
        session,
        master,
        stored,
        vault.SegmentContext(agreement_id, version, req.dataset, submission.id),
        ctx.now,
    )
    if replaced is not None:
        replaced.status = "replaced"
        replaced.withdrawn_at = ctx.now
    event = record(
        session,
        ctx,
        AuditRecord(
            action="submission.create",
            resource_type="submission",
            resource_id=submission.id,
            decision=decision,
            counts={"rows": stored.height},
            detail=f"dataset {req.dataset}" + (f"; replaces {replaced.id}" if replaced else ""),
        ),
    )
    submission.audit_index = event.idx
    session.flush()
    return Receipt.of(submission), True


def _own(session: Session, ctx: RequestContext, submission_id: str) -> Submission:
    row = session.get(Submission, submission_id)
    if row is None:
        raise NotFound("No such submission.")
    assert ctx.principal is not None
    if row.organization_id != ctx.principal.organization_id:
        # Same answer as a missing object would leak existence; but a partner probing ids of
        # another partner deserves an explicit denial in the audit trail.
        raise ObjectAccessDenied("This submission belongs to another organization.")
    return row


def get(session: Session, ctx: RequestContext, submission_id: str) -> Receipt:
    row = _own(session, ctx, submission_id)
    record(
        session,
        ctx,
        AuditRecord(action="submission.read", resource_type="submission", resource_id=row.id),
    )
    return Receipt.of(row)


def list_own(
    session: Session, ctx: RequestContext, *, dataset: str | None, limit: int, after: str | None
) -> Sequence[Receipt]:
    assert ctx.principal is not None
    query = select(Submission).where(Submission.organization_id == ctx.principal.organization_id)
    if dataset is not None:
        query = query.where(Submission.dataset == dataset)
    if after is not None:
        query = query.where(Submission.id < after)
    rows = session.scalars(query.order_by(Submission.id.desc()).limit(limit)).all()
    record(
        session,
        ctx,
        AuditRecord(
            action="submission.list", resource_type="submission", counts={"returned": len(rows)}
        ),
    )
    return [Receipt.of(r) for r in rows]


def withdraw(session: Session, ctx: RequestContext, submission_id: str) -> Receipt:
    """Withdraw a submission: it is excluded from every later release and purged after grace."""
    row = _own(session, ctx, submission_id)
    if row.status != "accepted":
        raise Conflict(f"The submission is already {row.status}.")
    row.status = "withdrawn"
    row.withdrawn_at = ctx.now
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action="submission.withdraw",
            resource_type="submission",
            resource_id=row.id,
            agreements=[(row.agreement_id, row.agreement_version)],
        ),
    )
    return Receipt.of(row)


def in_scope(session: Session, dataset: str, agreement_ids: frozenset[str]) -> list[Submission]:
    """Accepted submissions of ``dataset`` made under any of the given agreements.

    An amendment continues its agreement, so submissions made under an earlier version of an
    agreement in force remain in scope. Withdrawn, replaced and purged ones never are.
    """
    return list(
        session.scalars(
            select(Submission)
            .where(
                Submission.dataset == dataset,
                Submission.status == "accepted",
                Submission.agreement_id.in_(sorted(agreement_ids)),
            )
            .order_by(Submission.id)
        )
    )


def load_frame(
    session: Session, master: MasterKey, submissions: Sequence[Submission]
) -> pl.DataFrame | None:
    """Decrypt and concatenate the segments of ``submissions`` (None when there are none)."""
    frames: list[pl.DataFrame] = []
    for submission in submissions:
        segment = session.get(Segment, submission.id)
        if segment is None:  # pragma: no cover - every accepted submission has its segment
            continue
        ctx = vault.SegmentContext(
            submission.agreement_id, submission.agreement_version, submission.dataset, submission.id
        )
        frames.append(vault.load_segment(session, master, segment, ctx))
    if not frames:
        return None
    return pl.concat(frames, how="diagonal_relaxed")


def summary(receipt: Receipt) -> dict[str, Any]:
    return {
        "id": receipt.submission_id,
        "dataset": receipt.dataset,
        "agreement": {"id": receipt.agreement_id, "version": receipt.agreement_version},
        "row_count": receipt.row_count,
        "body_sha256": receipt.body_sha256,
        "received_at": receipt.received_at.isoformat(),
        "status": receipt.status,
        "audit_index": receipt.audit_index,
        "replaces": receipt.replaces,
        "period": receipt.period,
    }
