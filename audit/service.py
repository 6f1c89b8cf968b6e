"""Writing audit events, in the same transaction as the effect they record.

The event's index is taken from the single ``audit_head`` row, whose update locks it until the
transaction ends: indexes are gapless and in commit order on PostgreSQL and SQLite alike, and a
rolled-back request leaves no index behind. The Merkle frontier is advanced in the same update,
so the tree head is always current without rereading the log, and the perfect subtrees the new
leaf completes (from 2**STORED_LEVEL leaves up) are stored for fast proofs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from audit.canonical import canonical_bytes
from audit.merkle import Frontier, leaf_hash
from audit.models import STORED_LEVEL, AuditEvent, AuditHead, AuditNode
from core.context import RequestContext
from policy.model import Decision

OUTCOMES = ("succeeded", "denied", "rejected", "failed")
_HEAD = AuditHead.metadata.tables["audit_head"]
_SELECT_HEAD = select(_HEAD.c.size, _HEAD.c.frontier).where(_HEAD.c.id == 1).with_for_update()
_UPDATE_HEAD = (
    _HEAD.update()
    .where(_HEAD.c.id == 1)
    .values(size=bindparam("new_size"), frontier=bindparam("new_frontier"))
)
_INSERT_EVENT = AuditEvent.metadata.tables["audit_events"].insert()
_INSERT_NODES = AuditNode.metadata.tables["audit_nodes"].insert()


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
    """The one text form of an event time: RFC 3339, UTC, microseconds."""
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


def _entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical entry of an ``audit_events`` row given as a column mapping."""
    return {
        "index": row["idx"],
        "at": format_time(row["at"]),
        "request_id": row["request_id"],
        "organization": row["organization_id"],
        "client": row["client_id"],
        "action": row["action"],
        "resource_type": row["resource_type"],
        "resource_id": row["resource_id"],
        "agreements": row["agreements"],
        "purpose": row["purpose"],
        "decision": row["decision"],
        "rules": row["rules"],
        "reasons": row["reasons"],
        "counts": row["counts"],
        "outcome": row["outcome"],
        "detail": row["detail"],
    }


def _text(value: str | None, limit: int | None = None) -> str | None:
    """A string both databases store and give back unchanged; empty means absent.

    Refused requests are audited with values taken from the request (a path segment, say), so
    NUL characters (PostgreSQL cannot store them) and lone surrogates (not UTF-8) are replaced
    rather than allowed to make the audit write fail. An empty string becomes None so that the
    CSV export, where both are an empty cell, stays lossless.
    """
    if value is None or value == "":
        return None
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value[:limit] if limit is not None else value


def _json(value: Any) -> Any:
    """Apply :func:`_text`'s rules inside JSON values and refuse what JSON cannot hold."""
    if isinstance(value, str):
        return _text(value) or ""
    if isinstance(value, Mapping):
        return {(_text(str(k)) or ""): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [_json(v) for v in items]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("audit values must be finite numbers")
    if value is None or isinstance(value, bool | int | float):
        return value
    return _text(str(value)) or ""


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event just appended: its index (the Merkle leaf index) and its leaf hash."""

    idx: int
    leaf_hash: bytes


def _row(ctx: RequestContext, rec: AuditRecord, idx: int) -> dict[str, Any]:
    if rec.outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {rec.outcome}")
    action = _text(rec.action, 64)
    if action is None:
        raise ValueError("an audit event needs an action")
    agreements: list[tuple[str, int]] = list(rec.agreements)
    rules: list[dict[str, Any]] = []
    reasons: list[dict[str, Any]] = []
    decision: str | None = None
    if rec.decision is not None:
        decision = rec.decision.effect.value
        agreements.extend(rec.decision.agreements)
        rules = [r.as_dict() for r in rec.decision.deciding_rules]
        reasons = [f.as_dict() for f in rec.decision.failed_constraints]
    row: dict[str, Any] = {
        "idx": idx,
        "at": ctx.now,
        "request_id": _text(ctx.request_id, 64),
        "organization_id": _text(ctx.organization_id, 64),
        "client_id": _text(ctx.client_id, 64),
        "action": action,
        "resource_type": _text(rec.resource_type, 32),
        "resource_id": _text(rec.resource_id, 128),
        "agreements": _json([{"agreement": a, "version": v} for a, v in dict.fromkeys(agreements)]),
        "purpose": _text(rec.purpose, 80),
        "decision": decision,
        "rules": _json(rules),
        "reasons": _json(reasons),
        "counts": _json(dict(rec.counts)),
        "outcome": rec.outcome,
        "detail": _text(rec.detail),
    }
    row["leaf_hash"] = leaf_hash(canonical_bytes(_entry(row)))
    return row


def record_many(
    session: Session, items: Sequence[tuple[RequestContext, AuditRecord]]
) -> list[LoggedEvent]:
    """Append events in order, in the session's transaction: one locked read of the head, one
    insert of all rows, one update of the head, whatever their number (group commit)."""
    if not items:
        return []
    size, frontier_bytes = session.execute(_SELECT_HEAD).one()
    frontier = Frontier.from_bytes(size, frontier_bytes)
    rows: list[dict[str, Any]] = []
    stored: list[dict[str, Any]] = []
    for ctx, rec in items:
        row = _row(ctx, rec, frontier.size)
        rows.append(row)
        for level, index, h in frontier.append(row["leaf_hash"]):
            if level >= STORED_LEVEL:
                stored.append({"level": level, "idx": index, "hash": h})
    session.execute(_INSERT_EVENT, rows)
    session.execute(_UPDATE_HEAD, {"new_size": frontier.size, "new_frontier": frontier.to_bytes()})
    if stored:
        session.execute(_INSERT_NODES, stored)
    return [LoggedEvent(row["idx"], row["leaf_hash"]) for row in rows]


def record(session: Session, ctx: RequestContext, rec: AuditRecord) -> LoggedEvent:
    """Append one event to the log, in the session's transaction, and return its index.

    The row is written with prepared Core statements rather than through the ORM unit of work:
    this runs in every request, and an append-only row has nothing for the identity map to track.
    """
    return record_many(session, [(ctx, rec)])[0]
