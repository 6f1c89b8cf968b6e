"""Shared helpers for the audit tests: synthetic events and the append-only triggers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from audit.models import AuditEvent
from audit.service import AuditRecord, record
from core.context import RequestContext
from policy.model import Basis, Decision, Effect, FailedConstraint, Principal, RuleRef

ORGS = ("district", "health", "early-learning", "backbone", "auditor")
ACTIONS = (
    "submission.create",
    "submission.withdraw",
    "release.create",
    "release.read",
    "agreement.approve",
    "oauth.token",
    "audit.read",
)


def principal(org: str, client: str) -> Principal:
    kind = "auditor" if org == "auditor" else "backbone" if org == "backbone" else "partner"
    return Principal(client, org, kind, frozenset({"records:write"}))


def synthetic_record(rng: random.Random, i: int) -> AuditRecord:
    """A realistic event: a permit or deny with rules, reasons, counts and agreement versions."""
    action = rng.choice(ACTIONS)
    agreement = rng.choice(("district-early-learning-outcomes", "health-births", "elnet-prek"))
    if rng.random() < 0.2:
        decision = Decision(
            Effect.DENY,
            Basis.NOT_PERMITTED,
            "submit",
            failed_constraints=(
                FailedConstraint(
                    agreement, 2, "p-submit", "purpose", "isA", "dpv:PublicBenefit", "dpv:Marketing"
                ),
            ),
            agreements=((agreement, 2),),
        )
        return AuditRecord(action=action, outcome="denied", decision=decision, detail=f"denied {i}")
    decision = Decision(
        Effect.PERMIT,
        Basis.PERMITTED,
        "submit",
        deciding_rules=(RuleRef(agreement, 1, "p-submit"),),
        agreements=((agreement, 1),),
    )
    return AuditRecord(
        action=action,
        resource_type="submission",
        resource_id=f"sub_{i:06d}",
        decision=decision,
        purpose="dpv:PublicBenefit",
        counts={"rows": rng.randint(1, 5000), "share": round(rng.random(), 6)},
        detail="dataset kindergarten_readiness — café ✓" if i % 7 == 0 else None,
    )


def add_events(
    session: Session, count: int, *, seed: int = 7, start: datetime | None = None
) -> list[AuditEvent]:
    rng = random.Random(seed)
    now = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    events = []
    for i in range(count):
        org = rng.choice(ORGS)
        ctx = RequestContext(
            f"req{seed}-{i:08d}",
            now + timedelta(seconds=i, microseconds=i),
            principal(org, f"{org}-client"),
        )
        events.append(record(session, ctx, synthetic_record(rng, i)))
    return events


def all_leaves(session: Session) -> list[bytes]:
    return [
        bytes(h) for h in session.scalars(select(AuditEvent.leaf_hash).order_by(AuditEvent.idx))
    ]


APPEND_ONLY_TABLES = ("audit_events", "audit_checkpoints", "audit_nodes")


def drop_append_only_triggers(conn: Connection) -> None:
    """What an attacker with database access does first (only ever inside a rolled-back test)."""
    if conn.dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            conn.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
    else:
        for table in APPEND_ONLY_TABLES:
            for event in ("update", "delete"):
                conn.execute(text(f"DROP TRIGGER {table}_no_{event}"))
