"""Reading the log: events, checkpoints and proofs. Every read is itself audited, in the same
transaction.

Who may read what:

* an auditor (scope ``audit:read``, and the policy engine's ``read_audit`` decision) reads every
  event, exports, checkpoints and proofs;
* a partner (scope ``submissions:read``) reads checkpoints and consistency proofs (hashes only),
  and the inclusion proof of an event of its own organization, with that event's entry: what it
  needs to check, later and without trusting the operator, that its receipt is in the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from audit import checkpoints
from audit.actions import AuditAction
from audit.canonical import b64
from audit.models import AuditCheckpoint, AuditEvent
from audit.note import LogSigner
from audit.proofs import StoredTree, head_size
from audit.service import AuditRecord, entry_of, record
from core.context import RequestContext
from core.errors import Forbidden, InvalidInput, NotFound, ObjectAccessDenied, PolicyDenied
from policy.engine import decide
from policy.explain import explanation
from policy.model import Context, Decision, Resource

AUDITOR_SCOPE = "audit:read"
PARTNER_SCOPE = "submissions:read"
DECISIONS = ("permit", "deny")


def _check_action(action: str) -> None:
    """An action filter names an action of the log (or, ending in ``*``, a prefix of one): a
    misspelt filter is an error, not an empty page that reads as "nothing happened"."""
    names = {a.value for a in AuditAction}
    matched = (
        any(name.startswith(action[:-1]) for name in names)
        if action.endswith("*")
        else action in names
    )
    if not matched:
        families = ", ".join(sorted({name.split(".", 1)[0] + ".*" for name in names}))
        raise InvalidInput(
            "action names no action of the audit log; give an action (for example "
            f"submission.create) or a prefix ending in * ({families})."
        )


@dataclass(frozen=True)
class EventFilter:
    """Which events to list or export; None means any. ``action`` may end in ``*`` (a prefix)."""

    since: datetime | None = None
    until: datetime | None = None
    organization: str | None = None
    client: str | None = None
    action: str | None = None
    decision: str | None = None
    outcome: str | None = None
    agreement: str | None = None

    def __post_init__(self) -> None:
        if self.decision is not None and self.decision not in DECISIONS:
            raise InvalidInput("decision must be permit or deny.")
        if self.since and self.until and self.until <= self.since:
            raise InvalidInput("until must be later than since.")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidInput(f"{name} must include a time zone (for example Z).")
        if self.action is not None:
            _check_action(self.action)

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)

    def describe(self) -> str:
        """The filters as text for the audit event of the read (ids and times only)."""
        parts = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is not None:
                text = value.isoformat() if isinstance(value, datetime) else str(value)
                parts.append(f"{name}={text}")
        return "; ".join(parts)

    def clauses(self, dialect: str) -> list[ColumnElement[bool]]:
        """The filter as SQL conditions on ``audit_events``."""
        out: list[ColumnElement[bool]] = []
        if self.since is not None:
            out.append(AuditEvent.at >= self.since)
        if self.until is not None:
            out.append(AuditEvent.at < self.until)
        if self.organization is not None:
            out.append(AuditEvent.organization_id == self.organization)
        if self.client is not None:
            out.append(AuditEvent.client_id == self.client)
        if self.action is not None:
            if self.action.endswith("*"):
                prefix = self.action[:-1]
                escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                out.append(AuditEvent.action.like(escaped + "%", escape="\\"))
            else:
                out.append(AuditEvent.action == self.action)
        if self.decision is not None:
            out.append(AuditEvent.decision == self.decision)
        if self.outcome is not None:
            out.append(AuditEvent.outcome == self.outcome)
        if self.agreement is not None:
            if dialect == "postgresql":
                out.append(
                    type_coerce(AuditEvent.agreements, JSONB).contains(
                        [{"agreement": self.agreement}]
                    )
                )
            else:
                items = func.json_each(AuditEvent.agreements).table_valued("value")
                out.append(
                    select(literal(1))
                    .select_from(items)
                    .where(func.json_extract(items.c.value, "$.agreement") == self.agreement)
                    .exists()
                )
        return out

    def matches(self, entry: dict[str, Any], at: datetime) -> bool:
        """The same filter, applied to an event already read (as the export does)."""
        if self.since is not None and at < self.since:
            return False
        if self.until is not None and at >= self.until:
            return False
        for name, key in (
            ("organization", "organization"),
            ("client", "client"),
            ("decision", "decision"),
            ("outcome", "outcome"),
        ):
            want = getattr(self, name)
            if want is not None and entry[key] != want:
                return False
        if self.action is not None:
            action = str(entry["action"])
            if self.action.endswith("*"):
                if not action.startswith(self.action[:-1]):
                    return False
            elif action != self.action:
                return False
        return self.agreement is None or any(
            isinstance(a, dict) and a.get("agreement") == self.agreement
            for a in entry["agreements"]
        )


def authorize_auditor(ctx: RequestContext) -> Decision:
    """The policy decision that lets an auditor read the whole log; raises if denied."""
    assert ctx.principal is not None
    decision = decide(ctx.principal, "read_audit", Resource(), Context(), [], ctx.now)
    if not decision.permitted:
        raise PolicyDenied(explanation(decision), decision=decision)
    return decision


def _access(ctx: RequestContext) -> Decision | None:
    """An auditor's permit, or None for a partner (limited to hashes and its own events)."""
    assert ctx.principal is not None
    if AUDITOR_SCOPE in ctx.principal.scopes:
        return authorize_auditor(ctx)
    if PARTNER_SCOPE in ctx.principal.scopes:
        return None
    raise Forbidden("Reading the audit log needs audit:read, or submissions:read for receipts.")


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def list_events(
    session: Session, ctx: RequestContext, filters: EventFilter, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """Events matching ``filters`` with index greater than ``after``, oldest first."""
    decision = authorize_auditor(ctx)
    query = select(AuditEvent).where(*filters.clauses(_dialect(session)))
    if after is not None:
        query = query.where(AuditEvent.idx > after)
    rows = session.scalars(query.order_by(AuditEvent.idx).limit(limit)).all()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.AUDIT_READ,
            resource_type="audit_log",
            decision=decision,
            counts={"returned": len(rows)},
            detail=filters.describe() or None,
        ),
    )
    return [{**entry_of(r), "leaf_hash": b64(r.leaf_hash)} for r in rows]


def latest_checkpoint(session: Session, ctx: RequestContext, signer: LogSigner) -> AuditCheckpoint:
    """The latest checkpoint, made now if the log has grown since the last one."""
    decision = _access(ctx)
    row = checkpoints.create(session, signer, ctx.now)
    if row is None:
        raise NotFound("The audit log is empty: there is no checkpoint yet.")
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.AUDIT_CHECKPOINT_READ,
            resource_type="audit_checkpoint",
            resource_id=str(row.tree_size),
            decision=decision,
            counts={"tree_size": row.tree_size},
        ),
    )
    return row


def checkpoint_at(session: Session, ctx: RequestContext, size: int) -> AuditCheckpoint:
    """The checkpoint of one tree size (an export's, say), if one was made."""
    decision = _access(ctx)
    row = checkpoints.at_size(session, size)
    if row is None:
        raise NotFound("No checkpoint was made at that tree size.")
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.AUDIT_CHECKPOINT_READ,
            resource_type="audit_checkpoint",
            resource_id=str(size),
            decision=decision,
            counts={"tree_size": size},
        ),
    )
    return row


def _checkpoint_for(
    session: Session, signer: LogSigner, now: datetime, size: int | None, needed: int
) -> tuple[int, AuditCheckpoint | None]:
    """The tree size to prove against, and its checkpoint when it has one."""
    if size is None:
        row = checkpoints.create(session, signer, now)
        if row is None or row.tree_size < needed:
            raise InvalidInput("The log does not have that many events yet.")
        return row.tree_size, row
    current = head_size(session)
    if not needed <= size <= current:
        raise InvalidInput(f"The tree size must be between {needed} and {current}.")
    return size, checkpoints.at_size(session, size)


def inclusion_proof(
    session: Session,
    ctx: RequestContext,
    signer: LogSigner,
    *,
    index: int,
    tree_size: int | None,
) -> dict[str, Any]:
    """PATH(index, D[tree_size]) with the event's entry and, if any, the checkpoint of that size.

    ``tree_size`` defaults to the latest checkpoint, made now if the log has grown since.
    """
    assert ctx.principal is not None
    decision = _access(ctx)
    event = session.get(AuditEvent, index)
    if event is None:
        raise NotFound("No audit event has that index.")
    if decision is None and event.organization_id != ctx.principal.organization_id:
        raise ObjectAccessDenied("This audit event belongs to another organization.")
    size, checkpoint = _checkpoint_for(session, signer, ctx.now, tree_size, index + 1)
    proof = StoredTree(session).inclusion_proof(index, size)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.AUDIT_PROOF_INCLUSION,
            resource_type="audit_event",
            resource_id=str(index),
            decision=decision,
            counts={"tree_size": size},
        ),
    )
    return {
        "index": index,
        "tree_size": size,
        "leaf_hash": b64(event.leaf_hash),
        "proof": [b64(h) for h in proof],
        "entry": entry_of(event),
        "checkpoint": checkpoints.as_json(checkpoint, signer.origin) if checkpoint else None,
    }


def consistency_proof(
    session: Session,
    ctx: RequestContext,
    signer: LogSigner,
    *,
    first: int,
    second: int | None,
) -> dict[str, Any]:
    """PROOF(first, D[second]) and the checkpoints of both sizes when they have one.

    ``second`` defaults to the latest checkpoint, made now if the log has grown since.
    """
    decision = _access(ctx)
    if first < 1:
        raise InvalidInput("The first tree size must be at least 1.")
    size, checkpoint = _checkpoint_for(session, signer, ctx.now, second, first)
    proof = StoredTree(session).consistency_proof(first, size)
    old = checkpoints.at_size(session, first)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.AUDIT_PROOF_CONSISTENCY,
            resource_type="audit_log",
            decision=decision,
            counts={"first": first, "second": size},
        ),
    )
    return {
        "first": first,
        "second": size,
        "proof": [b64(h) for h in proof],
        "first_checkpoint": checkpoints.as_json(old, signer.origin) if old else None,
        "checkpoint": checkpoints.as_json(checkpoint, signer.origin) if checkpoint else None,
    }
