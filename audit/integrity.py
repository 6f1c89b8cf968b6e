"""The service checks its own log: every stored event is re-hashed from its row.

The Merkle tree is built from the leaf hashes stored beside the events, so a row edited behind the
service's back (its leaf hash left alone) still hashes to the same tree. Before it signs a
checkpoint, the service therefore re-hashes the events added since its last checkpoint from their
rows and refuses to sign when one is missing or no longer hashes to its leaf (see
``audit.checkpoints.create``); ``backbone audit self-check`` re-hashes the whole log and checks
the tree head and every stored checkpoint against the recomputed tree.

Findings name event indexes only, never the content of an event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.canonical import canonical_bytes
from audit.merkle import Frontier, leaf_hash
from audit.models import AuditCheckpoint, AuditEvent, AuditHead
from audit.service import format_time

BATCH = 5000
MAX_FINDINGS = 20

EVENT_COLUMNS = (
    AuditEvent.idx,
    AuditEvent.at,
    AuditEvent.request_id,
    AuditEvent.organization_id,
    AuditEvent.client_id,
    AuditEvent.action,
    AuditEvent.resource_type,
    AuditEvent.resource_id,
    AuditEvent.agreements,
    AuditEvent.purpose,
    AuditEvent.decision,
    AuditEvent.rules,
    AuditEvent.reasons,
    AuditEvent.counts,
    AuditEvent.outcome,
    AuditEvent.detail,
    AuditEvent.leaf_hash,
)


def entry_from_row(row: Any) -> tuple[dict[str, Any], datetime, bytes]:
    at: datetime = row[1]
    entry = {
        "index": row[0],
        "at": format_time(at),
        "request_id": row[2],
        "organization": row[3],
        "client": row[4],
        "action": row[5],
        "resource_type": row[6],
        "resource_id": row[7],
        "agreements": row[8],
        "purpose": row[9],
        "decision": row[10],
        "rules": row[11],
        "reasons": row[12],
        "counts": row[13],
        "outcome": row[14],
        "detail": row[15],
    }
    return entry, at, bytes(row[16])


def _rows(session: Session, lo: int, hi: int) -> Iterator[Any]:
    for start in range(lo, hi, BATCH):
        yield from session.execute(
            select(*EVENT_COLUMNS)
            .where(AuditEvent.idx >= start, AuditEvent.idx < min(start + BATCH, hi))
            .order_by(AuditEvent.idx)
        )


def rehashed(session: Session, lo: int, hi: int, problems: list[str]) -> Iterator[bytes]:
    """The leaf hashes of events [lo, hi) recomputed from their rows, in order; a missing event
    or one that no longer hashes to its stored leaf hash is added to ``problems``."""
    expected = lo
    for row in _rows(session, lo, hi):
        entry, _at, stored = entry_from_row(row)
        index = entry["index"]
        while expected < index:
            problems.append(f"event {expected} is missing")
            expected += 1
        leaf = leaf_hash(canonical_bytes(entry))
        if leaf != stored:
            problems.append(
                f"event {index} does not hash to the leaf hash logged for it (changed or moved)"
            )
        expected = index + 1
        yield leaf
    while expected < hi:
        problems.append(f"event {expected} is missing")
        expected += 1


def first_problem(session: Session, lo: int, hi: int) -> str | None:
    """The first problem among events [lo, hi), or None when every one re-hashes to its leaf."""
    problems: list[str] = []
    for _ in rehashed(session, lo, hi, problems):
        if problems:
            break
    return problems[0] if problems else None


@dataclass
class SelfCheck:
    size: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tree_size": self.size,
            "checkpoints": self.checkpoints,
            "problems": self.problems[:MAX_FINDINGS],
            "problem_count": len(self.problems),
            "seconds": round(self.seconds, 3),
        }


def self_check(session: Session) -> SelfCheck:
    """Re-hash the whole log from its rows and compare the recomputed tree with the tree head
    and with the root of every stored checkpoint."""
    started = time.perf_counter()
    size, frontier_bytes = session.execute(
        select(AuditHead.size, AuditHead.frontier).where(AuditHead.id == 1)
    ).one()
    report = SelfCheck(size=size)
    roots = dict(
        session.execute(select(AuditCheckpoint.tree_size, AuditCheckpoint.root_hash)).all()
    )
    report.checkpoints = len(roots)
    tree = Frontier()
    for leaf in rehashed(session, 0, size, report.problems):
        tree.append(leaf)
        expected = roots.get(tree.size)
        if expected is not None and tree.root() != bytes(expected):
            report.problems.append(
                f"the events up to {tree.size} do not hash to the root the checkpoint of size "
                f"{tree.size} signed"
            )
    beyond = sorted(s for s in roots if s > size)
    if beyond:
        report.problems.append(
            f"a checkpoint of size {beyond[0]} is beyond the log's {size} events"
        )
    if tree.size == size and tree.root() != Frontier.from_bytes(size, frontier_bytes).root():
        report.problems.append("the events do not hash to the stored tree head")
    report.seconds = time.perf_counter() - started
    return report


class IntegrityWatch:
    """What ``/readyz`` reports about the log: the events re-hashed from their rows, a bounded
    number per check (from the last checkpoint on, which was checked when it was signed), and
    any refusal to sign a checkpoint. A failure stays until the service restarts: an altered log
    needs an operator, not a retry."""

    def __init__(self, per_check: int = 20_000) -> None:
        self.per_check = per_check
        self.verified: int | None = None
        self.failure: str | None = None

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason

    def check(self, session: Session) -> str | None:
        """None if the log re-hashes so far, else the first problem found."""
        if self.failure is not None:
            return self.failure
        size = session.execute(select(AuditHead.size).where(AuditHead.id == 1)).scalar_one()
        if self.verified is None:
            last = session.execute(
                select(AuditCheckpoint.tree_size).order_by(AuditCheckpoint.tree_size.desc())
            ).first()
            self.verified = last[0] if last is not None else 0
        hi = min(size, self.verified + self.per_check)
        if hi > self.verified:
            problem = first_problem(session, self.verified, hi)
            if problem is not None:
                self.fail(problem)
                return problem
            self.verified = hi
        return None
