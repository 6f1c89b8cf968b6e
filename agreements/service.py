"""The agreement lifecycle: draft, proposed, active, suspended, terminated, superseded.

An agreement version becomes active only when every party has approved its exact content hash.
An active version is immutable; an amendment is a new version, which supersedes the old one when
it becomes active. Services flush and never commit; the request's unit of work commits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from agreements import codelist_service as codelists
from agreements import repository as repo
from agreements.codelists import CodeListCatalog, ResolvedCodeList
from agreements.compile import compile_terms
from agreements.document import AgreementDocument, Term
from agreements.errors import AgreementStateConflict, InvalidAgreement
from agreements.lint import lint
from agreements.models import (
    Agreement,
    AgreementApproval,
    AgreementDataset,
    AgreementParty,
    AgreementStatusChange,
    AgreementVersion,
)
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import Forbidden, NotFound
from core.periodic import Periodic
from notifications.events import EventType
from notifications.service import emit, emit_once
from policy.engine import PolicySet
from policy.model import AgreementTerms
from policy.vocabulary import OrganizationKind

LIVE_STATUSES = ("active", "suspended")


def _principal(ctx: RequestContext) -> tuple[str, str, str]:
    if ctx.principal is None:
        raise Forbidden("An authenticated client is required.")
    p = ctx.principal
    return p.organization_id, p.client_id, p.organization_kind


def _status(
    session: Session,
    ctx: RequestContext,
    row: AgreementVersion,
    status: str,
    reason: str | None = None,
) -> None:
    session.info["policy_changed"] = True
    row.status = status
    session.add(
        AgreementStatusChange(
            agreement_id=row.agreement_id,
            version=row.version,
            status=status,
            at=ctx.now,
            by_organization_id=ctx.organization_id,
            reason=reason,
        )
    )


def check(
    document: AgreementDocument, *, k_floor: int, catalog: CodeListCatalog | None = None
) -> None:
    """Raise :class:`InvalidAgreement` with every lint error, if there are any (warnings, such
    as a newer version of a code list, do not block)."""
    findings = [f for f in lint(document, k_floor=k_floor, codelists=catalog) if f.is_error]
    if findings:
        raise InvalidAgreement(
            f"The agreement has {len(findings)} problem(s); nothing was stored.",
            [f.as_dict() for f in findings],
        )


def create(
    session: Session, ctx: RequestContext, document: AgreementDocument, *, k_floor: int = 5
) -> AgreementVersion:
    """Lint ``document`` and store it as a new draft version (version 1, or the next amendment)."""
    org, _client, kind = _principal(ctx)
    catalog = codelists.catalog_for(session, document)
    check(document, k_floor=k_floor, catalog=catalog)
    resolved = codelists.resolve(session, document)
    if org not in document.party_ids and kind != OrganizationKind.BACKBONE:
        raise Forbidden("Only a party to the agreement or the backbone may draft it.")
    agreement = repo.get(session, document.uid)
    if agreement is None:
        agreement = Agreement(
            id=document.uid,
            title=document.title,
            created_by=org,
            created_at=ctx.now,
            latest_version=0,
        )
        session.add(agreement)
    else:
        previous = repo.get_version(session, agreement.id, agreement.latest_version)
        if (
            previous is not None
            and org not in previous.document_parties()
            and kind != OrganizationKind.BACKBONE
        ):
            raise Forbidden("Only a party to the agreement or the backbone may amend it.")
        agreement.title = document.title
    agreement.latest_version += 1
    version = AgreementVersion(
        agreement_id=agreement.id,
        version=agreement.latest_version,
        document=document.model_dump(mode="json", by_alias=True, exclude_none=True),
        content_hash=document.content_hash(),
        status="draft",
        effective_at=Term.as_datetime(document.term.effective),
        expires_at=Term.as_datetime(document.term.expires),
        created_at=ctx.now,
    )
    if resolved:
        version.codelists = {ref: found.snapshot() for ref, found in sorted(resolved.items())}
    session.add(version)
    session.flush()
    for party in document.parties:
        session.add(
            AgreementParty(
                agreement_id=agreement.id,
                version=version.version,
                organization_id=party.org,
                role=party.role,
            )
        )
    for ds in document.datasets:
        session.add(
            AgreementDataset(
                agreement_id=agreement.id,
                version=version.version,
                dataset=ds.name,
                provider_id=ds.provider,
            )
        )
    _status(session, ctx, version, "draft")
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.AGREEMENT_CREATE,
            resource_type="agreement",
            resource_id=f"{agreement.id}/v{version.version}",
            agreements=[(agreement.id, version.version)],
        ),
    )
    _awaiting(session, ctx, version, approved=frozenset())
    return version


def _awaiting(
    session: Session, ctx: RequestContext, row: AgreementVersion, approved: frozenset[str]
) -> None:
    """Tell the parties that have yet to approve ``row`` that it awaits their approval."""
    waiting = row.document_parties() - approved
    emit(
        session,
        EventType.AGREEMENT_AWAITING_APPROVAL,
        {
            "agreement": {
                "id": row.agreement_id,
                "version": row.version,
                "content_hash": row.content_hash,
                "status": row.status,
            },
            "approved_by": sorted(approved),
            "awaiting": sorted(waiting),
        },
        now=ctx.now,
        agreements=[terms_of(row)],
        recipients=waiting,
    )


def _version(session: Session, agreement_id: str, version: int | None = None) -> AgreementVersion:
    agreement = repo.get(session, agreement_id)
    if agreement is None:
        raise NotFound("No such agreement.")
    row = repo.get_version(session, agreement_id, version or agreement.latest_version)
    if row is None:
        raise NotFound("No such agreement version.")
    return row


def approve(
    session: Session, ctx: RequestContext, agreement_id: str, version: int, content_hash: str
) -> AgreementVersion:
    """Record the caller's organization's approval of the exact version ``content_hash`` names."""
    org, client, _kind = _principal(ctx)
    row = _version(session, agreement_id, version)
    if org not in row.document_parties():
        raise Forbidden("Only a party to the agreement may approve it.")
    if row.status not in ("draft", "proposed"):
        raise AgreementStateConflict(f"Version {version} is {row.status} and cannot be approved.")
    if content_hash != row.content_hash:
        raise AgreementStateConflict(
            "The content hash does not match this version; fetch it again and approve what you read."
        )
    if any(a.organization_id == org for a in repo.approvals(session, agreement_id, version)):
        raise AgreementStateConflict("Your organization has already approved this version.")
    session.add(
        AgreementApproval(
            agreement_id=agreement_id,
            version=version,
            organization_id=org,
            client_id=client,
            content_hash=content_hash,
            approved_at=ctx.now,
        )
    )
    session.flush()
    approved = {a.organization_id for a in repo.approvals(session, agreement_id, version)}
    if approved >= row.document_parties():
        for other in repo.versions(session, agreement_id):
            if other.version != version and other.status in LIVE_STATUSES:
                other.ended_at = ctx.now
                other.end_reason = f"superseded by version {version}"
                _status(session, ctx, other, "superseded")
        row.activated_at = ctx.now
        _status(session, ctx, row, "active")
    elif row.status == "draft":
        _status(session, ctx, row, "proposed")
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.AGREEMENT_APPROVE,
            resource_type="agreement",
            resource_id=f"{agreement_id}/v{version}",
            agreements=[(agreement_id, version)],
            detail=f"status {row.status}",
        ),
    )
    if row.status != "active":
        _awaiting(session, ctx, row, approved=frozenset(approved))
    return row


def _live_version(session: Session, agreement_id: str) -> AgreementVersion:
    for row in reversed(repo.versions(session, agreement_id)):
        if row.status in LIVE_STATUSES:
            return row
    if repo.get(session, agreement_id) is None:
        raise NotFound("No such agreement.")
    raise AgreementStateConflict("The agreement has no active or suspended version.")


def change_status(
    session: Session, ctx: RequestContext, agreement_id: str, action: str, reason: str | None
) -> AgreementVersion:
    """Suspend, resume or terminate the live version; effective from the next request."""
    org, _client, kind = _principal(ctx)
    row = _live_version(session, agreement_id)
    if org not in row.document_parties() and kind != OrganizationKind.BACKBONE:
        raise Forbidden("Only a party to the agreement or the backbone may change its status.")
    transitions = {
        "suspend": ("active", "suspended"),
        "resume": ("suspended", "active"),
        "terminate": (None, "terminated"),
    }
    if action not in transitions:
        raise NotFound("No such agreement action.")
    before, after = transitions[action]
    if before is not None and row.status != before:
        raise AgreementStateConflict(f"The agreement is {row.status}; it cannot be {action}d.")
    if after == "terminated":
        row.ended_at = ctx.now
        row.end_reason = reason or "terminated"
    _status(session, ctx, row, after, reason)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction(f"agreement.{action}"),
            resource_type="agreement",
            resource_id=f"{agreement_id}/v{row.version}",
            agreements=[(agreement_id, row.version)],
            detail=reason[:200] if reason else None,
        ),
    )
    changed = {
        "suspend": EventType.AGREEMENT_SUSPENDED,
        "terminate": EventType.AGREEMENT_TERMINATED,
    }
    if action in changed:
        # The reason is free text from a party: it stays in the audit log, out of payloads.
        emit(
            session,
            changed[action],
            {
                "agreement": {"id": agreement_id, "version": row.version, "status": row.status},
                "by": org,
            },
            now=ctx.now,
            agreements=[terms_of(row)],
        )
    return row


EXPIRY_NOTICE = timedelta(days=60)


def notify_expiring(session: Session, now: datetime, notice: timedelta = EXPIRY_NOTICE) -> int:
    """Emit ``agreement.expiring``, once per version, for every active version whose term ends
    within ``notice``; the number emitted. Run by ``backbone webhooks deliver``."""
    emitted = 0
    for row in repo.all_versions(session):
        if row.status != "active" or not now < row.expires_at <= now + notice:
            continue
        event = emit_once(
            session,
            f"agreement.expiring/{row.agreement_id}/v{row.version}",
            EventType.AGREEMENT_EXPIRING,
            {
                "agreement": {"id": row.agreement_id, "version": row.version},
                "expires_at": row.expires_at.isoformat(),
                "days_left": (row.expires_at - now).days,
            },
            now=now,
            agreements=[terms_of(row)],
        )
        emitted += event is not None
    return emitted


def record_read(session: Session, ctx: RequestContext, agreement_id: str, what: str) -> None:
    """Audit a read of an agreement (its versions, one version, or its ODRL form)."""
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.AGREEMENT_READ,
            resource_type="agreement",
            resource_id=agreement_id,
            detail=what,
        ),
    )


def effective_status(row: AgreementVersion, now: datetime) -> str:
    """The stored status, except that an active or suspended version past its term is expired."""
    if row.status in LIVE_STATUSES and now >= row.expires_at:
        return "expired"
    return row.status


def governing_version(session: Session, agreement_id: str, at: datetime) -> AgreementVersion | None:
    """The version that governed ``at``: active at that moment and within its term."""
    if repo.get(session, agreement_id) is None:
        raise NotFound("No such agreement.")
    status: dict[int, str] = {}
    for change in repo.status_history(session, agreement_id):
        if change.at <= at:
            status[change.version] = change.status
    for row in reversed(repo.versions(session, agreement_id)):
        if status.get(row.version) == "active" and row.effective_at <= at < row.expires_at:
            return row
    return None


def in_force(session: Session, agreement_ids: Sequence[str], at: datetime) -> dict[str, float]:
    """The ``epsilon_per_period`` of each agreement's version governing ``at`` (those with one)."""
    out: dict[str, float] = {}
    for agreement_id in agreement_ids:
        row = governing_version(session, agreement_id, at)
        budget = None if row is None else terms_of(row).disclosure.epsilon_per_period
        if budget is not None:
            out[agreement_id] = budget
    return out


def codelists_of(row: AgreementVersion) -> dict[str, ResolvedCodeList]:
    """The code list versions a stored agreement version refers to, as it keeps them."""
    return {
        ref: ResolvedCodeList.from_snapshot(ref, data)
        for ref, data in (row.codelists or {}).items()
    }


def terms_of(row: AgreementVersion) -> AgreementTerms:
    document = AgreementDocument.model_validate(row.document)
    return compile_terms(
        document,
        version=row.version,
        status=row.status,
        content_hash=row.content_hash,
        codelists=codelists_of(row),
    )


@dataclass
class _Cached:
    generation: int
    policy: PolicySet


class PolicyCache:
    """Compiled terms of every agreement version, rebuilt only when some status changes.

    ``get(session)`` checks the generation (one cheap query) and is exact. ``current()`` needs
    no database: it is the last policy this worker loaded, kept fresh by the worker that commits
    a change (before it answers) and, for changes made by other workers, by a follower thread
    every ``BACKBONE_AUTH_SYNC_SECONDS``. Hot read paths use ``current()``.
    """

    def __init__(self, sessions: Callable[[], Session] | None = None) -> None:
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self._sessions = sessions
        self._follower = Periodic(
            "policy-follower", self.refresh, "could not follow agreement changes"
        )

    def get(self, session: Session) -> PolicySet:
        generation = repo.policy_generation(session)
        cached = self._cached
        if cached is not None and cached.generation == generation:
            return cached.policy
        with self._lock:
            cached = self._cached
            if cached is not None and cached.generation == generation:
                return cached.policy
            policy = PolicySet(terms_of(row) for row in repo.all_versions(session))
            self._cached = _Cached(generation, policy)
            return policy

    def current(self) -> PolicySet | None:
        cached = self._cached
        return cached.policy if cached is not None else None

    def refresh(self) -> None:
        """Reload if any agreement changed since the last load (own session)."""
        if self._sessions is None:
            return
        with self._sessions() as session:
            self.get(session)

    def start(self, interval: float) -> None:
        """Follow changes made by other workers every ``interval`` seconds."""
        if self._sessions is not None:
            self._follower.start(interval)

    def stop(self) -> None:
        self._follower.stop()


def with_draft(session: Session, policy: PolicySet, document: AgreementDocument) -> PolicySet:
    """``policy`` as if ``document`` were the active version of its agreement."""
    agreement = repo.get(session, document.uid)
    version = (agreement.latest_version if agreement else 0) + 1
    draft = compile_terms(
        document, version=version, status="active", codelists=codelists.resolve(session, document)
    )
    others = [t for t in policy.agreements if t.id != document.uid]
    return PolicySet([*others, draft])


def versions(session: Session, agreement_id: str) -> Sequence[AgreementVersion]:
    rows = repo.versions(session, agreement_id)
    if not rows:
        raise NotFound("No such agreement.")
    return rows
