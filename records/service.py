"""Submissions: accept a body under the governing agreement, store it encrypted, issue a receipt.

A submission is stored whole or not at all. The body is read, validated, pseudonymized and
sealed by :func:`records.ingest.ingest` without touching the database; :func:`store` then writes
the receipt, the segment, its parts, the wrapped keys and the audit event in the caller's one
transaction, after deciding again under the agreements in force at that moment.

Services flush and never commit; the request's unit of work commits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from agreements import repository as agreement_repo
from agreements.document import AgreementDocument
from agreements.models import AgreementStatusChange
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ObjectAccessDenied,
    PolicyDenied,
)
from core.ids import new_id
from core.keys import MasterKey
from notifications.events import EventType, audience
from notifications.service import emit
from policy.engine import PolicySet, decide
from policy.explain import explanation
from policy.model import AgreementTerms, Context, DatasetTerms, Decision, Principal, Resource
from records import idempotency, intake, quality, vault
from records.errors import (
    IdempotencyConflict,
    IdempotencyInFlight,
    ReplacementInvalid,
    WithdrawalNotAllowed,
)
from records.ingest import IngestSpec, Prepared, ingest
from records.models import Segment, Submission
from records.pseudonymize import Tokenizer, linkage_key
from records.validate import unlisted_columns

SUBMISSION_PREFIX = "sub"


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
    withdrawal_requested_at: datetime | None
    withdrawal_effective_at: datetime | None
    # A withdrawal was asked for and has not taken effect yet: the data is still in use.
    withdrawal_scheduled: bool
    # The CSV delimiter the header was read with (None for other formats).
    csv_delimiter: str | None = None
    # The data-quality report (see records.quality); None for submissions made before it.
    quality: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: Submission, now: datetime) -> Receipt:
        """The receipt as it stands at ``now``: a scheduled withdrawal whose time has come is
        ``withdrawn`` here even before the purge run records it (see :func:`withdraw`)."""
        status = row.status
        if status == "accepted" and withdrawal_effective(row, now):
            status = "withdrawn"
        return cls(
            submission_id=row.id,
            dataset=row.dataset,
            agreement_id=row.agreement_id,
            agreement_version=row.agreement_version,
            row_count=row.row_count,
            body_sha256=row.body_sha256,
            received_at=row.received_at,
            status=status,
            audit_index=row.audit_index,
            replaces=row.replaces_id,
            period=row.period,
            withdrawal_requested_at=row.withdrawal_requested_at,
            withdrawal_effective_at=row.withdrawal_effective_at,
            withdrawal_scheduled=row.withdrawal_effective_at is not None
            and not withdrawal_effective(row, now),
            csv_delimiter=csv_delimiter(row.content_type),
            quality=row.quality,
        )


# The stored format of a CSV body names its delimiter unless it is the comma, so that receipts
# of earlier submissions (stored as plain "csv") read the same.
_DELIMITER_NAMES = {";": "semicolon", "\t": "tab"}


def stored_format(fmt: str, delimiter: str | None) -> str:
    """The format as the submission row keeps it: ``csv;delimiter=semicolon`` and the like."""
    name = _DELIMITER_NAMES.get(delimiter or ",")
    return f"{fmt};delimiter={name}" if fmt == "csv" and name else fmt


def csv_delimiter(stored: str) -> str | None:
    """The delimiter of a stored CSV format (see :func:`stored_format`); None if not CSV."""
    fmt, _, param = stored.partition(";delimiter=")
    if fmt != "csv":
        return None
    for delimiter, name in _DELIMITER_NAMES.items():
        if param == name:
            return delimiter
    return ","


def withdrawal_effective(row: Submission, now: datetime) -> bool:
    """Has a withdrawal of this submission taken effect at ``now``?"""
    return row.withdrawal_effective_at is not None and row.withdrawal_effective_at <= now


@dataclass(frozen=True)
class Target:
    """Where a submission goes: the governing agreement version and its dataset terms."""

    agreement_id: str
    version: int
    dataset: DatasetTerms


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _principal(ctx: RequestContext) -> Principal:
    if ctx.principal is None:
        raise Forbidden("An authenticated client is required.")
    return ctx.principal


def _decide(
    ctx: RequestContext, policy: PolicySet, dataset: str, fields: Sequence[str] | None
) -> Decision:
    resource = Resource(
        datasets=(dataset,), fields=frozenset(fields) if fields is not None else None
    )
    return decide(_principal(ctx), "submit", resource, Context(), policy, ctx.now)


def _target(policy: PolicySet, decision: Decision, dataset: str) -> Target:
    ref = decision.deciding_rules[0]
    for terms in policy.versions(ref.agreement_id):
        if terms.version == ref.version:
            ds = terms.dataset(dataset)
            if ds is not None:
                return Target(terms.id, terms.version, ds)
    raise NotFound("The dataset is not defined by the governing agreement.")  # pragma: no cover


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def submittable(ctx: RequestContext, policy: PolicySet) -> list[str]:
    """The datasets this client may submit to now."""
    names = {ds.name for terms in policy.agreements for ds in terms.datasets}
    return sorted(n for n in names if _decide(ctx, policy, n, None).permitted)


def _refusal(
    session: Session | None,
    ctx: RequestContext,
    policy: PolicySet,
    dataset: str,
    decision: Decision,
) -> str:
    """The decision's explanation, with what helps: a dataset no agreement covers is named as
    unknown with the datasets the client may submit to; an agreement of the client's organization
    that covers it but is not in force is named with its status and the reason given."""
    if not policy.covering(dataset):
        shown = f"'{dataset}'" if _NAME.match(dataset) else "named in the path"
        allowed = submittable(ctx, policy)
        may = ", ".join(allowed) if allowed else "none at present"
        return f"Unknown dataset {shown}: no agreement covers it. You may submit to: {may}."
    org = _principal(ctx).organization_id
    notes = []
    for terms in policy.covering(dataset):
        if terms.in_force(ctx.now) or org not in {p for p, _ in terms.parties}:
            continue
        status = terms.status if terms.status != "active" else "not in its term"
        note = f"agreement {terms.id} v{terms.version} is {status}"
        if session is not None and terms.status in ("suspended", "terminated"):
            reason = session.scalars(
                select(AgreementStatusChange.reason)
                .where(
                    AgreementStatusChange.agreement_id == terms.id,
                    AgreementStatusChange.version == terms.version,
                    AgreementStatusChange.status == terms.status,
                )
                .order_by(AgreementStatusChange.id.desc())
                .limit(1)
            ).first()
            if reason:
                note += f" (reason: {reason[:200]})"
        notes.append(note)
    if notes:
        return f"{explanation(decision)} Note: {'; '.join(notes)}."
    return explanation(decision)


def authorize(
    ctx: RequestContext, policy: PolicySet, dataset: str, session: Session | None = None
) -> Target:
    """May this client submit to ``dataset`` at all? Decided before the body is read."""
    decision = _decide(ctx, policy, dataset, None)
    if not decision.permitted:
        raise PolicyDenied(_refusal(session, ctx, policy, dataset, decision), decision=decision)
    return _target(policy, decision, dataset)


def authorize_quietly(
    ctx: RequestContext, policy: PolicySet, dataset: str
) -> tuple[Target, Decision] | None:
    """Where this client's submission to ``dataset`` would go now, and the deciding "submit"
    decision; None where it may not submit (no explanation: the caller answers 404)."""
    decision = _decide(ctx, policy, dataset, None)
    if not decision.permitted:
        return None
    return _target(policy, decision, dataset), decision


def field_guard(
    ctx: RequestContext, policy: PolicySet, dataset: str, fields: frozenset[str] = frozenset()
) -> Callable[[list[str]], None]:
    """A check of the body's column names (data minimization), run as soon as they are known.

    The refusal names the unlisted columns that are evidently column names (see
    :func:`records.validate.unlisted_columns`), and hints at a ';' delimiter or a missing header.
    """

    def check(columns: list[str]) -> None:
        decision = _decide(ctx, policy, dataset, columns)
        if not decision.permitted:
            detail = explanation(decision)
            named, hint = unlisted_columns(columns, set(fields))
            if named:
                shown = ", ".join(named[:20]) + (", ..." if len(named) > 20 else "")
                detail += f" Unlisted column(s): {shown}."
            if hint:
                detail += f" {hint}"
            raise PolicyDenied(detail, decision=decision)

    return check


def check_replacement(
    session: Session, ctx: RequestContext, dataset: str, period: str | None, replaces: str | None
) -> Submission | None:
    """The accepted submission of the same organization, dataset and period to be replaced."""
    if replaces is None:
        return None
    replaced = session.get(Submission, replaces)
    if replaced is None or replaced.organization_id != _principal(ctx).organization_id:
        raise NotFound("The submission to replace does not exist.")
    if replaced.dataset != dataset or replaced.status != "accepted":
        raise ReplacementInvalid("Only an accepted submission of the same dataset can be replaced.")
    if replaced.withdrawal_effective_at is not None:
        # Ambiguous: the replacement would end its use at once (cutting the notice short) and
        # carry no withdrawal itself (undoing it). The partner says which it means.
        raise ReplacementInvalid(
            "The submission is being withdrawn (see its receipt's withdrawal); it cannot be "
            "replaced. Cancel the withdrawal first, or submit the new records without 'replaces'."
        )
    if replaced.period != period:
        raise ReplacementInvalid(
            "A replacement must declare the same period as the submission it replaces."
        )
    return replaced


def ingest_spec(
    ctx: RequestContext,
    master: MasterKey,
    policy: PolicySet,
    target: Target,
    *,
    submission_id: str,
    fmt: str,
    coding: str,
    limits: intake.IntakeLimits,
    period: str | None,
    spill: Path,
    sheet: str | None = None,
) -> IngestSpec:
    if sheet is not None and fmt not in intake.SPREADSHEETS:
        raise InvalidInput("'sheet' names a sheet of a spreadsheet; this body is not one.")
    return IngestSpec(
        fmt=fmt,
        coding=coding,
        limits=limits,
        dataset=target.dataset,
        period=period,
        tokenizer=Tokenizer(linkage_key(master)),
        segment=vault.SegmentContext(
            target.agreement_id, target.version, target.dataset.name, submission_id
        ),
        spill=spill,
        on_columns=field_guard(ctx, policy, target.dataset.name, target.dataset.field_names),
        sheet=sheet,
    )


def new_submission_id() -> str:
    return new_id(SUBMISSION_PREFIX)


@dataclass(frozen=True)
class Envelope:
    """What the request says about its body besides the records."""

    body_sha256: str
    fmt: str
    period: str | None = None
    replaces: str | None = None
    idempotency_key: str | None = None  # already hashed, see records.idempotency
    reservation: idempotency.Reservation | None = None


def replay(
    session: Session, ctx: RequestContext, previous: Submission, dataset: str, body_sha256: str
) -> Receipt:
    """The original receipt for a repeated Idempotency-Key, if the request is the same."""
    if previous.body_sha256 != body_sha256 or previous.dataset != dataset:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different submission."
        )
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.SUBMISSION_CREATE,
            resource_type="submission",
            resource_id=previous.id,
            detail="idempotent replay; the original receipt was returned",
        ),
    )
    return Receipt.of(previous, ctx.now)


def store(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    policy: PolicySet,
    prepared: Prepared,
    envelope: Envelope,
) -> tuple[Receipt, bool]:
    """Write an ingested submission; returns its receipt and whether it is new (not replayed)."""
    principal = _principal(ctx)
    segment_ctx = prepared.writer.ctx
    # The agreement may have ended while the body was being read: decide again, now.
    decision = _decide(ctx, policy, segment_ctx.dataset, prepared.columns)
    if not decision.permitted:
        raise PolicyDenied(explanation(decision), decision=decision)
    target = _target(policy, decision, segment_ctx.dataset)
    if (target.agreement_id, target.version) != (
        segment_ctx.agreement_id,
        segment_ctx.agreement_version,
    ):
        raise PolicyDenied(
            "The governing agreement changed while the submission was being read; submit again.",
            decision=decision,
        )
    if envelope.idempotency_key is not None:
        previous = idempotency.previous_submission(
            session, principal.client_id, envelope.idempotency_key
        )
        if previous is not None:
            # A request with the same key committed while this one was being read.
            if envelope.reservation is not None:
                idempotency.settle(session, envelope.reservation)
            return replay(session, ctx, previous, segment_ctx.dataset, envelope.body_sha256), False
        if envelope.reservation is not None and not idempotency.settle(
            session, envelope.reservation
        ):
            raise IdempotencyInFlight(
                "Another request has taken over this Idempotency-Key; retry later.",
                extra={"retry_after": idempotency.RETRY_AFTER_SECONDS},
            )
    replaced = check_replacement(
        session, ctx, segment_ctx.dataset, envelope.period, envelope.replaces
    )
    report = quality_report(
        session,
        master,
        prepared,
        organization_id=principal.organization_id,
        dataset=target.dataset,
        period=envelope.period,
        replaced=replaced,
        now=ctx.now,
    )
    submission = Submission(
        id=segment_ctx.submission_id,
        dataset=segment_ctx.dataset,
        agreement_id=segment_ctx.agreement_id,
        agreement_version=segment_ctx.agreement_version,
        organization_id=principal.organization_id,
        client_id=principal.client_id,
        status="accepted",
        row_count=prepared.row_count,
        body_sha256=envelope.body_sha256,
        content_type=stored_format(envelope.fmt, prepared.delimiter),
        period=envelope.period,
        replaces_id=replaced.id if replaced else None,
        idempotency_key=envelope.idempotency_key,
        received_at=ctx.now,
        columns=list(prepared.columns),
        quality=report,
    )
    session.add(submission)
    session.flush()
    vault.store_segment(session, master, prepared.writer, prepared.schema, ctx.now)
    if replaced is not None:
        replaced.status = "replaced"
        replaced.withdrawn_at = ctx.now
    event = record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.SUBMISSION_CREATE,
            resource_type="submission",
            resource_id=submission.id,
            decision=decision,
            counts={
                "rows": prepared.row_count,
                "parts": len(prepared.writer.parts),
                "bytes": prepared.raw_bytes,
            },
            detail=f"dataset {segment_ctx.dataset}"
            + (f"; replaces {replaced.id}" if replaced else ""),
        ),
    )
    submission.audit_index = event.idx
    session.flush()
    accepted = {
        "submission": submission.id,
        "dataset": submission.dataset,
        "agreement": {"id": target.agreement_id, "version": target.version},
        "organization": submission.organization_id,
        "row_count": submission.row_count,
        "period": submission.period,
        "replaces": submission.replaces_id,
    }
    terms = _terms_of(policy, target)
    # The full report (counts per period and per geography, which can be small) goes to the
    # submitting organization only, as its receipt does; every other party of the agreement is
    # told of the submission with the report's warning codes, never its counts: a cell of rows
    # per neighborhood is a count about people that no suppression rule has passed.
    emit(
        session,
        EventType.SUBMISSION_ACCEPTED,
        {**accepted, "quality": report},
        now=ctx.now,
        agreements=terms,
        datasets=(submission.dataset,),
        recipients=(submission.organization_id,),
    )
    told = audience(EventType.SUBMISSION_ACCEPTED, terms, (submission.dataset,))
    others = (told.parties | set(told.obligated)) - {submission.organization_id}
    if others:
        emit(
            session,
            EventType.SUBMISSION_ACCEPTED,
            {**accepted, "quality": quality.summary(report)},
            now=ctx.now,
            agreements=terms,
            datasets=(submission.dataset,),
            recipients=others,
        )
    return Receipt.of(submission, ctx.now), True


def quality_report(
    session: Session,
    master: MasterKey,
    prepared: Prepared,
    *,
    organization_id: str,
    dataset: DatasetTerms,
    period: str | None,
    replaced: Submission | None,
    now: datetime,
) -> dict[str, Any]:
    """The quality report of a submission about to be stored: the body's own counts and the
    warnings that compare it with the organization's earlier submissions of the dataset for the
    same declared ``period`` (none without one), see :mod:`records.quality`."""
    earlier = quality.Earlier(due=dataset_due(dataset, period), received_at=now)
    if period is not None:
        same = session.scalars(
            select(Submission)
            .where(
                Submission.organization_id == organization_id,
                Submission.dataset == dataset.name,
                Submission.period == period,
                Submission.id != prepared.writer.ctx.submission_id,
            )
            .order_by(Submission.received_at.desc(), Submission.id.desc())
        ).all()
        previous = next(
            (
                row
                for row in same
                if row.status in ("accepted", "replaced")
                and row.quality is not None
                and not withdrawal_effective(row, now)
            ),
            None,
        )
        in_use = [
            row
            for row in same
            if row.status == "accepted"
            and not withdrawal_effective(row, now)
            and (replaced is None or row.id != replaced.id)
        ]
        duplicates = 0
        if dataset.key and in_use and prepared.key_hashes is not None:
            keys = load_frame(session, master, in_use, list(dataset.key))
            duplicates = quality.duplicate_count(prepared.key_hashes, keys, dataset.key)
        earlier = quality.Earlier(
            previous_id=previous.id if previous is not None else None,
            previous_report=previous.quality if previous is not None else None,
            in_use=[row.id for row in in_use],
            replaces=replaced.id if replaced is not None else None,
            duplicate_keys=duplicates,
            due=earlier.due,
            received_at=now,
        )
    return quality.compare(prepared.quality, earlier)


def dataset_due(dataset: DatasetTerms, period: str | None) -> date | None:
    """The date the agreement's submission schedule sets for ``period`` (None: no schedule)."""
    if period is None:
        return None
    return dict(dataset.schedule).get(period)


def _terms_of(policy: PolicySet, target: Target) -> list[AgreementTerms]:
    return [t for t in policy.versions(target.agreement_id) if t.version == target.version]


def notify_rejected(
    session: Session,
    ctx: RequestContext,
    *,
    policy: PolicySet,
    dataset: str,
    report: Mapping[str, Any],
) -> None:
    """Emit ``submission.rejected`` (with the report's counts, never its rows) in the
    transaction that records the refusal."""
    decision = _decide(ctx, policy, dataset, None)
    if not decision.permitted:
        return
    target = _target(policy, decision, dataset)
    emit(
        session,
        EventType.SUBMISSION_REJECTED,
        {
            "dataset": dataset,
            "agreement": {"id": target.agreement_id, "version": target.version},
            "organization": _principal(ctx).organization_id,
            "report": {
                "error_count": report.get("error_count"),
                "counts": report.get("counts", {}),
                "truncated": report.get("truncated", False),
            },
        },
        now=ctx.now,
        agreements=_terms_of(policy, target),
        datasets=(dataset,),
    )


@dataclass(frozen=True)
class Opening:
    """A submission decided before its body is read: where it goes, its hashed
    Idempotency-Key, and the earlier submission that key names (a replay) if any."""

    target: Target
    idempotency_key: str | None
    previous: Submission | None


def open_submission(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    policy: PolicySet,
    dataset: str,
    *,
    idempotency_key: str | None,
    period: str | None,
    replaces: str | None,
    key_hash: str | None = None,
) -> Opening:
    """Everything decided before a body is read, in one order for every way a body comes (a
    stream over HTTP, a file from the demo or a tool): the client must be allowed to submit to
    ``dataset`` first, so that a replayed key never answers a client the agreements no longer
    allow; then a repeated key is a replay; otherwise the submission it replaces must be its
    own and current. ``key_hash`` stands for an Idempotency-Key already hashed (a resumable
    upload keeps only the hash)."""
    principal = _principal(ctx)
    target = authorize(ctx, policy, dataset, session)
    hashed = (
        idempotency.key_hash(master, principal.client_id, idempotency_key)
        if idempotency_key is not None
        else key_hash
    )
    previous = (
        idempotency.previous_submission(session, principal.client_id, hashed)
        if hashed is not None
        else None
    )
    if previous is None:
        check_replacement(session, ctx, dataset, period, replaces)
    return Opening(target, hashed, previous)


@dataclass(frozen=True)
class SubmissionRequest:
    """A whole body already on disk (the demo seed and tools); the API streams instead."""

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
    sheet: str | None = None


def submit(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    policy: PolicySet,
    req: SubmissionRequest,
) -> tuple[Receipt, bool]:
    """Accept a body from a file, in the caller's transaction. Returns (receipt, is_new)."""
    fmt = intake.media_format(req.content_type)
    coding = intake.content_coding(req.content_encoding)
    opening = open_submission(
        session,
        ctx,
        master,
        policy,
        req.dataset,
        idempotency_key=req.idempotency_key,
        period=req.period,
        replaces=req.replaces,
    )
    if opening.previous is not None:
        req.scratch.unlink(missing_ok=True)
        return replay(session, ctx, opening.previous, req.dataset, req.body_sha256), False
    hashed = opening.idempotency_key
    spec = ingest_spec(
        ctx,
        master,
        policy,
        opening.target,
        submission_id=new_submission_id(),
        fmt=fmt,
        coding=coding,
        limits=req.limits,
        period=req.period,
        spill=req.scratch,
        sheet=req.sheet,
    )
    try:
        with req.body.open("rb") as body:
            prepared = ingest(body, spec)
        return store(
            session,
            ctx,
            master,
            policy,
            prepared,
            Envelope(
                body_sha256=req.body_sha256,
                fmt=fmt,
                period=req.period,
                replaces=req.replaces,
                idempotency_key=hashed,
            ),
        )
    finally:
        req.scratch.unlink(missing_ok=True)


# -- reading receipts ---------------------------------------------------------------------------


def _own(session: Session, ctx: RequestContext, submission_id: str) -> Submission:
    row = session.get(Submission, submission_id)
    if row is None:
        raise NotFound("No such submission.")
    if row.organization_id != _principal(ctx).organization_id:
        # A partner probing ids of another partner deserves an explicit denial in the audit
        # trail; the answer reveals nothing of the submission itself.
        raise ObjectAccessDenied("This submission belongs to another organization.")
    return row


def get(session: Session, ctx: RequestContext, submission_id: str) -> Receipt:
    """One of the caller's organization's receipts."""
    row = _own(session, ctx, submission_id)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.SUBMISSION_READ, resource_type="submission", resource_id=row.id
        ),
    )
    return Receipt.of(row, ctx.now)


def list_own(
    session: Session, ctx: RequestContext, *, dataset: str | None, limit: int, after: str | None
) -> Sequence[Receipt]:
    """The caller's organization's receipts, newest first (ids sort by time)."""
    query = select(Submission).where(Submission.organization_id == _principal(ctx).organization_id)
    if dataset is not None:
        query = query.where(Submission.dataset == dataset)
    if after is not None:
        query = query.where(Submission.id < after)
    rows = session.scalars(query.order_by(Submission.id.desc()).limit(limit)).all()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.SUBMISSION_LIST,
            resource_type="submission",
            counts={"returned": len(rows)},
        ),
    )
    return [Receipt.of(r, ctx.now) for r in rows]


@dataclass(frozen=True)
class WithdrawalTerms:
    """The agreement version whose ``withdrawal`` terms govern a submission now."""

    agreement_id: str
    version: int
    allowed: bool
    notice_days: int


def withdrawal_terms(session: Session, row: Submission) -> WithdrawalTerms:
    """The withdrawal terms of the agreement as it stands (its current version: an amendment
    approved by every party replaces the terms a submission was made under)."""
    version = agreement_repo.current_version(
        session, row.agreement_id
    ) or agreement_repo.get_version(session, row.agreement_id, row.agreement_version)
    if version is None:  # pragma: no cover - a submission names an existing agreement version
        raise NotFound("The agreement of this submission does not exist.")
    spec = AgreementDocument.model_validate(version.document).withdrawal
    return WithdrawalTerms(row.agreement_id, version.version, spec.allowed, spec.notice_days)


def own_withdrawal_terms(
    session: Session, ctx: RequestContext, submission_id: str
) -> WithdrawalTerms:
    """The withdrawal terms that govern one of the caller's organization's submissions now (what
    :func:`withdraw` would apply), for a confirmation before withdrawing; another
    organization's submission is refused as :func:`withdraw` refuses it."""
    return withdrawal_terms(session, _own(session, ctx, submission_id))


def withdraw(session: Session, ctx: RequestContext, submission_id: str) -> Receipt:
    """Withdraw a submission under its agreement's ``withdrawal`` terms.

    ``allowed: false`` refuses (:class:`records.errors.WithdrawalNotAllowed`, naming the term)
    and changes nothing. With ``notice_days: 0`` the submission is withdrawn at once. Otherwise
    the withdrawal is scheduled: the submission stays ``accepted`` and in every release's scope
    until ``withdrawal_effective_at`` (now plus the notice), then leaves them exactly at that
    moment because every scope query compares it with its own ``now``. The purge run records
    that it took effect (status ``withdrawn``, an audit event) and crypto-shreds it after the
    agreement's grace period counted from the effective time (see :mod:`records.retention`).
    The agreement acting (suspension, termination, expiry) still stops use at once: its
    submissions leave scope with it whatever withdrawals are pending.
    """
    row = _own(session, ctx, submission_id)
    if row.status != "accepted" or withdrawal_effective(row, ctx.now):
        status = "withdrawn" if row.status == "accepted" else row.status
        raise Conflict(f"The submission is already {status}.")
    if row.withdrawal_effective_at is not None:
        raise Conflict(
            "A withdrawal of this submission is already scheduled; it takes effect at "
            f"{row.withdrawal_effective_at.isoformat()}."
        )
    terms = withdrawal_terms(session, row)
    if not terms.allowed:
        raise WithdrawalNotAllowed(
            f"Agreement {terms.agreement_id} v{terms.version} does not allow withdrawing "
            "submissions (withdrawal.allowed: false); the submission stays in use under the "
            "agreement's terms."
        )
    effective_at = ctx.now + timedelta(days=terms.notice_days)
    row.withdrawal_requested_at = ctx.now
    row.withdrawal_effective_at = effective_at
    if terms.notice_days == 0:
        row.status = "withdrawn"
        row.withdrawn_at = ctx.now
        detail = (
            f"withdrawn at once (agreement {terms.agreement_id} v{terms.version}: "
            "withdrawal.notice_days 0)"
        )
    else:
        detail = (
            f"withdrawal scheduled: takes effect at {effective_at.isoformat()} (agreement "
            f"{terms.agreement_id} v{terms.version}: withdrawal.notice_days {terms.notice_days})"
        )
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.SUBMISSION_WITHDRAW,
            resource_type="submission",
            resource_id=row.id,
            agreements=[(row.agreement_id, row.agreement_version)],
            detail=detail,
        ),
    )
    return Receipt.of(row, ctx.now)


def cancel_withdrawal(session: Session, ctx: RequestContext, submission_id: str) -> Receipt:
    """Cancel a scheduled withdrawal before it takes effect: the submission stays in use as if
    it had never been asked for. One that has taken effect cannot be undone."""
    row = _own(session, ctx, submission_id)
    if row.status != "accepted" or withdrawal_effective(row, ctx.now):
        status = "withdrawn" if row.status == "accepted" else row.status
        raise Conflict(f"The submission is already {status}; its withdrawal cannot be cancelled.")
    if row.withdrawal_effective_at is None:
        raise Conflict("No withdrawal of this submission is scheduled.")
    effective_at = row.withdrawal_effective_at
    row.withdrawal_requested_at = None
    row.withdrawal_effective_at = None
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.SUBMISSION_WITHDRAWAL_CANCEL,
            resource_type="submission",
            resource_id=row.id,
            agreements=[(row.agreement_id, row.agreement_version)],
            detail=f"scheduled withdrawal cancelled before {effective_at.isoformat()}",
        ),
    )
    return Receipt.of(row, ctx.now)


# -- reading records (for aggregation) -----------------------------------------------------------


def in_scope(
    session: Session, dataset: str, agreement_ids: frozenset[str], now: datetime
) -> list[Submission]:
    """Accepted submissions of ``dataset`` made under any of the given agreements, at ``now``.

    An amendment continues its agreement, so submissions made under an earlier version of an
    agreement in force remain in scope. Withdrawn, replaced and purged ones never are, nor is
    one whose scheduled withdrawal has taken effect by ``now`` (recorded by the purge or not).
    """
    return list(
        session.scalars(
            select(Submission)
            .where(
                Submission.dataset == dataset,
                Submission.status == "accepted",
                or_(
                    Submission.withdrawal_effective_at.is_(None),
                    Submission.withdrawal_effective_at > now,
                ),
                Submission.agreement_id.in_(sorted(agreement_ids)),
            )
            .order_by(Submission.id)
        )
    )


SUBMISSION_COLUMN = "__submission"


def load_frame(
    session: Session,
    master: MasterKey,
    submissions: Sequence[Submission],
    columns: Sequence[str] | None = None,
    *,
    with_submission: bool = False,
) -> pl.DataFrame | None:
    """Decrypt and concatenate the segments of ``submissions`` (None when there are none).

    ``columns`` limits what is decoded (the columns a submission lacks are left out);
    ``with_submission`` adds the submission id of each row as ``__submission``."""
    keys = vault.DataKeys(session, master)
    frames: list[pl.DataFrame] = []
    for submission in submissions:
        segment = session.get(Segment, submission.id)
        if segment is None:
            raise vault.DataDestroyed("The data of this submission has been destroyed.")
        ctx = vault.SegmentContext(
            submission.agreement_id, submission.agreement_version, submission.dataset, submission.id
        )
        wanted = None if columns is None else [c for c in columns if c in submission.columns]
        frame = vault.load_segment(session, segment, ctx, keys, wanted)
        if with_submission:
            frame = frame.with_columns(pl.lit(submission.id).alias(SUBMISSION_COLUMN))
        frames.append(frame)
    if not frames:
        return None
    return pl.concat(frames, how="diagonal_relaxed")


def data_keys(session: Session, submissions: Sequence[Submission]) -> list[str]:
    """The data keys that protect these submissions' records."""
    ids = [s.id for s in submissions]
    if not ids:
        return []
    return sorted(
        set(
            session.scalars(select(Segment.data_key_id).where(Segment.submission_id.in_(ids))).all()
        )
    )


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
        **({"csv": {"delimiter": receipt.csv_delimiter}} if receipt.csv_delimiter else {}),
        "quality": receipt.quality,
        "withdrawal": (
            None
            if receipt.withdrawal_effective_at is None or receipt.withdrawal_requested_at is None
            else {
                "requested_at": receipt.withdrawal_requested_at.isoformat(),
                "effective_at": receipt.withdrawal_effective_at.isoformat(),
                "state": "scheduled" if receipt.withdrawal_scheduled else "effective",
            }
        ),
    }
