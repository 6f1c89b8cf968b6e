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

from sqlalchemy import Connection, Dialect, bindparam, select
from sqlalchemy.orm import Session

from audit.actions import AuditAction
from audit.canonical import JSON_FIELDS, MAX_SAFE_INTEGER, canonical_json
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
_INSERT_NODES = AuditNode.metadata.tables["audit_nodes"].insert()
_PG_UPDATE_HEAD = "UPDATE audit_head SET size = %s, frontier = %s WHERE id = 1"
_PG_INSERT_NODE = "INSERT INTO audit_nodes (level, idx, hash) VALUES (%s, %s, %s)"


@dataclass(frozen=True)
class AuditRecord:
    """What happened. Never put tokens, secrets, raw identifiers or record values here."""

    action: AuditAction
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
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER:
        return str(value)  # RFC 8785 numbers are exact only within +-(2**53 - 1)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _text(str(value)) or ""


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event just appended: its index (the Merkle leaf index) and its leaf hash."""

    idx: int
    leaf_hash: bytes


# Every column of an event row but its index and leaf hash, which are known only under the lock.
_COLUMNS = tuple(
    c.name
    for c in AuditEvent.metadata.tables["audit_events"].columns
    if c.name not in ("idx", "leaf_hash")
)
_INSERT_SQL: dict[tuple[str, str], str] = {}


def _insert_sql(dialect: Dialect) -> str:
    """The events INSERT in the driver's own parameter style (executed without SQLAlchemy's
    per-row bind processing, which cost as much as the rest of an append together)."""
    key = (dialect.name, dialect.paramstyle)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        if dialect.paramstyle in ("format", "pyformat"):
            mark = "%s"
        elif dialect.paramstyle == "qmark":
            mark = "?"
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise RuntimeError(f"unsupported parameter style {dialect.paramstyle}")
        cast = "::jsonb" if dialect.name == "postgresql" else ""
        marks = [mark + cast if c in JSON_FIELDS else mark for c in _COLUMNS]
        sql = (
            f"INSERT INTO audit_events (idx, {', '.join(_COLUMNS)}, leaf_hash) "
            f"VALUES ({mark}, {', '.join(marks)}, {mark})"
        )
        _INSERT_SQL[key] = sql
    return sql


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An event ready to append but for its index: the column values of its row (the index and
    leaf hash left out) and its canonical bytes split around the index."""

    values: tuple[Any, ...]
    before_index: bytes
    after_index: bytes

    def canonical(self, idx: int) -> bytes:
        return self.before_index + str(idx).encode() + self.after_index


def _prepare(ctx: RequestContext, rec: AuditRecord, sqlite: bool) -> _Prepared:
    """Everything about an event that does not depend on its index, computed before the log's
    head is locked so that the lock is held only for the index, the hashes and the writes."""
    if rec.outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {rec.outcome}")
    action = _text(rec.action and str(rec.action), 64)  # stored and hashed as a plain string
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
    if row["at"].tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    entry = _entry({**row, "idx": 0})
    # Canonical JSON sorts its keys: "index" falls between "detail" and "organization", and
    # both sides always hold some of ENTRY_FIELDS, so the bytes split cleanly around it.
    before = canonical_json({k: v for k, v in entry.items() if k < "index"})
    after = canonical_json({k: v for k, v in entry.items() if k > "index"})
    at = row["at"].astimezone(UTC)
    values = tuple(
        (at.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at)
        if c == "at"
        else canonical_json(row[c]).decode()
        if c in JSON_FIELDS
        else row[c]
        for c in _COLUMNS
    )
    return _Prepared(values, before[:-1] + b',"index":', b"," + after[1:])


def record_many(
    session: Session | Connection, items: Sequence[tuple[RequestContext, AuditRecord]]
) -> list[LoggedEvent]:
    """Append events in order, in the transaction of ``session`` (an ORM session or a Core
    connection): one locked read of the head, one insert of all rows, one update of the head,
    whatever their number (group commit)."""
    if not items:
        return []
    conn = session.connection() if isinstance(session, Session) else session
    sqlite = conn.dialect.name == "sqlite"
    prepared = [_prepare(ctx, rec, sqlite) for ctx, rec in items]
    size, frontier_bytes = conn.execute(_SELECT_HEAD).one()
    frontier = Frontier.from_bytes(size, frontier_bytes)
    rows: list[tuple[Any, ...]] = []
    logged: list[LoggedEvent] = []
    stored: list[dict[str, Any]] = []
    for p in prepared:
        idx = frontier.size
        h = leaf_hash(p.canonical(idx))
        rows.append((idx, *p.values, h))
        logged.append(LoggedEvent(idx, h))
        for level, index, node in frontier.append(h):
            if level >= STORED_LEVEL:
                stored.append({"level": level, "idx": index, "hash": node})
    if conn.dialect.name == "postgresql":
        # The head stays locked until commit: the writes go in one round trip (a pipeline),
        # not one each, so concurrent appenders wait less.
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.pipeline(), driver.cursor() as cur:
            cur.executemany(_insert_sql(conn.dialect), rows)
            cur.execute(_PG_UPDATE_HEAD, (frontier.size, frontier.to_bytes()))
            if stored:
                cur.executemany(
                    _PG_INSERT_NODE, [(n["level"], n["idx"], n["hash"]) for n in stored]
                )
        return logged
    conn.exec_driver_sql(_insert_sql(conn.dialect), rows)
    conn.execute(_UPDATE_HEAD, {"new_size": frontier.size, "new_frontier": frontier.to_bytes()})
    if stored:
        conn.execute(_INSERT_NODES, stored)
    return logged


def record_listing(
    session: Session,
    ctx: RequestContext,
    action: AuditAction,
    resource_type: str,
    count: int,
    detail: str = "list",
) -> LoggedEvent:
    """Audit a read of a list (how many items were shown, never which): the one event a JSON
    route and the console's page both leave for the same listing."""
    return record(
        session,
        ctx,
        AuditRecord(
            action=action, resource_type=resource_type, counts={resource_type: count}, detail=detail
        ),
    )


def record(session: Session, ctx: RequestContext, rec: AuditRecord) -> LoggedEvent:
    """Append one event to the log, in the session's transaction, and return its index.

    The row is written with prepared Core statements rather than through the ORM unit of work:
    this runs in every request, and an append-only row has nothing for the identity map to track.
    """
    return record_many(session, [(ctx, rec)])[0]
