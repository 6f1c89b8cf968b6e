"""Signed checkpoints of the log: made on demand, by ``backbone audit checkpoint`` and on a timer.

A checkpoint is made only when the log has grown since the last one, under the ``audit_head``
row lock, so concurrent callers (API workers, cron, the timer) never sign two heads of one size.
Before signing, the service checks the stored tree against itself and against the previous
checkpoint (a consistency proof from stored hashes), and re-hashes the events added since that
checkpoint from their rows: it never signs a head that does not extend what it signed before or
that holds an edited event, so an altered database stops checkpointing instead of laundering
history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit.canonical import b64
from audit.errors import AuditIntegrityError
from audit.integrity import first_problem
from audit.merkle import Frontier, verify_consistency
from audit.models import AuditCheckpoint, AuditHead
from audit.note import LogSigner
from audit.proofs import StoredTree
from core.periodic import Periodic

log = logging.getLogger("backbone.audit")


def latest(session: Session) -> AuditCheckpoint | None:
    """The checkpoint of the largest tree, if any."""
    return session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
    ).first()


def at_size(session: Session, size: int) -> AuditCheckpoint | None:
    return session.get(AuditCheckpoint, size)


def create(session: Session, signer: LogSigner, now: datetime) -> AuditCheckpoint | None:
    """Sign the current tree head if the log has grown; return the latest checkpoint (None if
    the log is empty). Raises :class:`AuditIntegrityError` rather than sign an altered log."""
    # Columns, not the ORM entity: appends update the head with Core statements.
    size, frontier = session.execute(
        select(AuditHead.size, AuditHead.frontier).where(AuditHead.id == 1).with_for_update()
    ).one()
    last = latest(session)
    if size == 0 or (last is not None and last.tree_size >= size):
        return last
    root = Frontier.from_bytes(size, frontier).root()
    tree = StoredTree(session, size)
    if tree.root(size) != root:
        raise AuditIntegrityError("The stored log does not hash to its tree head.")
    if last is not None:
        proof = tree.consistency_proof(last.tree_size, size)
        if not verify_consistency(last.tree_size, size, last.root_hash, root, proof):
            raise AuditIntegrityError(
                f"The stored log no longer extends the checkpoint of size {last.tree_size}."
            )
    # The tree is made of the stored leaf hashes: re-hash the events it has gained since the
    # last checkpoint from their rows, so that a row edited behind the service's back (its leaf
    # hash left alone) is not signed into history.
    problem = first_problem(session, last.tree_size if last is not None else 0, size)
    if problem is not None:
        raise AuditIntegrityError(f"The stored log failed its self-check: {problem}.")
    note, signature = signer.sign(size, root, now)
    row = AuditCheckpoint(
        tree_size=size,
        root_hash=root,
        created_at=now,
        key_id=signer.key_id.hex(),
        signature=signature,
        note=note,
    )
    session.add(row)
    session.flush()
    return row


def as_json(row: AuditCheckpoint, origin: str) -> dict[str, Any]:
    return {
        "origin": origin,
        "tree_size": row.tree_size,
        "root_hash": b64(row.root_hash),
        "time": row.created_at.isoformat(timespec="microseconds"),
        "key_id": row.key_id,
        "note": row.note,
    }


class CheckpointTimer:
    """Makes a checkpoint every ``interval`` seconds in a daemon thread (when the log grew).

    Optional: with several API workers each may run one; the row lock makes that harmless.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        signer: LogSigner,
        clock: Callable[[], datetime],
        interval: float,
        on_integrity_failure: Callable[[str], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the checkpoint interval must be positive")
        self.sessions = sessions
        self.signer = signer
        self.clock = clock
        self.interval = interval
        self.on_integrity_failure = on_integrity_failure
        self._timer = Periodic("audit-checkpoints", self.tick, "could not make an audit checkpoint")

    def tick(self) -> AuditCheckpoint | None:
        """Make one checkpoint now if the log has grown; errors are logged, never raised."""
        try:
            with self.sessions() as session:
                row = create(session, self.signer, self.clock())
                session.commit()
                return row
        except AuditIntegrityError as exc:
            log.error("audit log integrity check failed; no checkpoint was signed: %s", exc.detail)
            if self.on_integrity_failure is not None:
                self.on_integrity_failure(exc.detail)
        except Exception:
            log.exception("could not make an audit checkpoint")
        return None

    def start(self) -> None:
        self._timer.start(self.interval)

    def stop(self, timeout: float | None = 5.0) -> None:
        self._timer.stop(timeout)
