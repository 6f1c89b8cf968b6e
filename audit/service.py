"""Writing audit events, in the same transaction as the effect they record.

The event's index is taken from the single ``audit_head`` row, whose update locks it until the
transaction ends: indexes are gapless and in commit order on PostgreSQL and SQLite alike, and a
rolled-back request leaves no index behind. The Merkle frontier is advanced in the same update,
so the tree head is always current without rereading the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.canonical import canonical_bytes
from audit.merkle import Frontier, leaf_hash
from audit.models import AuditEvent, AuditHead
from core.context import RequestContext
from policy.model import Decision

OUTCOMES = ("succeeded", "denied", "rejected", "failed")


@dataclass(frozen=True)
class AuditRecord:
    """What happened. Never put tokens, secrets, raw identifiers or record values here."""

    action: str
    outcome: str = "succeeded"
    resource_type: str | None = None
    resource_id: str | None = None
    decision: Decision | None = None
    agreements: Sequence[tuple[str, int]] = ()
    purpose: str | None = None
    counts: Mapping[str, int | float] = field(default_factory=dict)
    detail: str | None = None


def format_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_of(event: AuditEvent) -> dict[str, Any]:
    """The canonical entry of a stored event (what its leaf hashes, what an export carries)."""
    return {
        "index": event.idx,
        "at": format_time(event.at),
        "request_id": event.request_id,
        "organization": event.organization_id,
        "client": event.client_id,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "agreements": event.agreements,
        "purpose": event.purpose,
        "decision": event.decision,
        "rules": event.rules,
        "reasons": event.reasons,
        "counts": event.counts,
        "outcome": event.outcome,
        "detail": event.detail,
    }


def record(session: Session, ctx: RequestContext, rec: AuditRecord) -> AuditEvent:
    """Append one event to the log and return it (its ``idx`` is the Merkle leaf index)."""
    if rec.outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {rec.outcome}")
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()
    agreements: list[tuple[str, int]] = list(rec.agreements)
    rules: list[dict[str, Any]] = []
    reasons: list[dict[str, Any]] = []
    decision: str | None = None
    if rec.decision is not None:
        decision = rec.decision.effect.value
        agreements.extend(rec.decision.agreements)
        rules = [r.as_dict() for r in rec.decision.deciding_rules]
        reasons = [f.as_dict() for f in rec.decision.failed_constraints]
    event = AuditEvent(
        idx=head.size,
        at=ctx.now,
        request_id=ctx.request_id,
        organization_id=ctx.organization_id,
        client_id=ctx.client_id,
        action=rec.action,
        resource_type=rec.resource_type,
        resource_id=rec.resource_id,
        agreements=[{"agreement": a, "version": v} for a, v in dict.fromkeys(agreements)],
        purpose=rec.purpose,
        decision=decision,
        rules=rules,
        reasons=reasons,
        counts=dict(rec.counts),
        outcome=rec.outcome,
        detail=rec.detail,
        leaf_hash=b"",
    )
    event.leaf_hash = leaf_hash(canonical_bytes(entry_of(event)))
    frontier = Frontier.from_bytes(head.size, head.frontier)
    frontier.append(event.leaf_hash)
    head.size = frontier.size
    head.frontier = frontier.to_bytes()
    session.add(event)
    session.flush()
    return event
