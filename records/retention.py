"""Retention: crypto-shredding after expiry, termination or withdrawal plus the grace period.

``purge`` is run by ``backbone records purge`` and once at start-up. For each agreement whose
current version (the latest that was ever active) has expired or been terminated, and whose
grace period (``retention.grace_period_days`` of that version) has passed since, it destroys the
agreement's data keys, deletes the segments of all its submissions and marks them ``purged``.
For each withdrawn or replaced submission whose grace period has passed, it deletes the segment,
whose row holds the only copy of the submission's wrapped segment key. Each of these writes an
audit event in the same transaction. Receipts stay: what was submitted, when, and that its data
has been destroyed.

A withdrawal under an agreement with ``withdrawal.notice_days`` is scheduled (see
:func:`records.service.withdraw`): the submission stays ``accepted`` until its
``withdrawal_effective_at``. The purge records that it took effect: it sets the status to
``withdrawn`` (``withdrawn_at`` = the effective time, from which the grace period counts) and
writes a ``submission.withdrawal_effective`` event. It is recorded here, by the purge run (at
start-up and by ``backbone records purge`` from cron), rather than lazily by whichever request
happens to read the submission next, because reads and release computations must not write,
and one place and one time (the run) makes the event easy to find. The effect itself never
waits for the run: scope queries and receipts compare ``withdrawal_effective_at`` with their own
``now``, so the submission leaves every release exactly at its effective time; the event's
detail names that time, the event's own time says when the run noticed.

Deleting a row does not erase its bytes at once: SQLite leaves freed pages and old WAL frames,
PostgreSQL leaves dead tuples until a vacuum. So a purge also scrubs: on SQLite with
``secure_delete`` (freed content is zeroed) and a truncating WAL checkpoint, on PostgreSQL with
``VACUUM FULL`` of the two small tables that hold wrapped keys. After that, no copy of the
database holds a key that opens the purged data, even with the master key. What stays out of
reach: backups and PostgreSQL WAL archives made before the purge (keep their retention within
the grace period, or rotate the master key after a purge: a re-wrap under a new master key makes
every older copy of the keys useless once the old master key is destroyed).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.orm import Session, sessionmaker

from agreements import repository as agreement_repo
from agreements.models import AgreementVersion
from agreements.service import terms_of
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.ids import new_id
from core.keys import MasterKey
from notifications.events import EventType
from notifications.service import emit
from records import vault
from records.models import DataKey, IdempotencyReservation, Segment, SegmentPart, Submission
from records.process import hostname, owner_alive, process_token

log = logging.getLogger("backbone.records")
SHREDDABLE = ("accepted", "withdrawn", "replaced")
KEY_TABLES = ("data_keys", "segments")


@dataclass(frozen=True)
class AgreementEnd:
    agreement_id: str
    version: int
    reason: str  # expired | terminated
    ended_at: datetime
    grace: timedelta

    @property
    def purge_after(self) -> datetime:
        return self.ended_at + self.grace


@dataclass
class PurgeReport:
    now: datetime
    agreements: list[dict[str, Any]] = field(default_factory=list)
    submissions: list[dict[str, Any]] = field(default_factory=list)
    withdrawals: list[dict[str, Any]] = field(default_factory=list)  # took effect in this run
    scrubbed: bool | None = None
    scratch_removed: int = 0
    uploads_removed: int = 0  # files of expired (or forgotten) resumable uploads
    skipped: bool = False  # another purge held the lock

    @property
    def purged_anything(self) -> bool:
        return bool(self.agreements or self.submissions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "agreements": self.agreements,
            "submissions": self.submissions,
            "withdrawals": self.withdrawals,
            "scrubbed": self.scrubbed,
            "scratch_removed": self.scratch_removed,
            "uploads_removed": self.uploads_removed,
            "skipped": self.skipped,
        }


def _current_version(session: Session, agreement_id: str) -> AgreementVersion | None:
    """The latest version that was ever in force: it decides whether the agreement has ended."""
    return agreement_repo.current_version(session, agreement_id)


def _grace(row: AgreementVersion) -> timedelta:
    return timedelta(days=terms_of(row).grace_period_days)


def agreement_end(session: Session, agreement_id: str, now: datetime) -> AgreementEnd | None:
    """When and why the agreement ended, or None while it is in force (or merely suspended)."""
    row = _current_version(session, agreement_id)
    if row is None:
        return None
    if row.status == "terminated":
        ended = min(row.ended_at or row.expires_at, row.expires_at)
        reason = "terminated" if ended < row.expires_at else "expired"
        return AgreementEnd(agreement_id, row.version, reason, ended, _grace(row))
    if row.status in ("active", "suspended") and row.expires_at <= now:
        return AgreementEnd(agreement_id, row.version, "expired", row.expires_at, _grace(row))
    return None


def _agreements_holding_data(session: Session) -> list[str]:
    with_keys = session.scalars(
        select(DataKey.agreement_id).where(DataKey.destroyed_at.is_(None)).distinct()
    ).all()
    with_data = session.scalars(
        select(Submission.agreement_id).where(Submission.status.in_(SHREDDABLE)).distinct()
    ).all()
    return sorted(set(with_keys) | set(with_data))


def _delete_segment(session: Session, submission_id: str) -> None:
    session.execute(delete(SegmentPart).where(SegmentPart.submission_id == submission_id))
    session.execute(delete(Segment).where(Segment.submission_id == submission_id))


def _prepare(session: Session) -> bool:
    """Set the transaction up for a purge; False if another purge is running right now."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # Zero what this transaction frees, in the database file and the WAL alike. (Its write
        # lock, taken at BEGIN, already keeps a second purge waiting until this one is done.)
        session.connection().exec_driver_sql("PRAGMA secure_delete = ON")
    elif dialect == "postgresql":
        # Several workers run the start-up check at once: one purges, the others skip.
        return bool(
            session.connection()
            .exec_driver_sql("SELECT pg_try_advisory_xact_lock(hashtext('backbone/records/purge'))")
            .scalar()
        )
    return True


def purge(session: Session, ctx: RequestContext, now: datetime) -> PurgeReport:
    """Destroy whatever retention says must go at ``now``. Flushes; the caller commits.

    Run :func:`scrub` after the commit to erase the freed bytes too.
    """
    report = PurgeReport(now)
    if not _prepare(session):
        report.skipped = True
        return report
    # First, so that a withdrawal that took effect is on record before any shredding, and its
    # grace period below counts from its effective time.
    report.withdrawals = settle_withdrawals(session, ctx, now)
    for agreement_id in _agreements_holding_data(session):
        end = agreement_end(session, agreement_id, now)
        if end is None or end.purge_after > now:
            continue
        report.agreements.append(_shred_agreement(session, ctx, end, now))
    withdrawn = session.scalars(
        select(Submission)
        .where(Submission.status.in_(("withdrawn", "replaced")))
        .order_by(Submission.id)
    ).all()
    graces: dict[str, timedelta] = {}
    for sub in withdrawn:
        if sub.agreement_id not in graces:
            current = _current_version(session, sub.agreement_id) or agreement_repo.get_version(
                session, sub.agreement_id, sub.agreement_version
            )
            graces[sub.agreement_id] = _grace(current) if current else timedelta(0)
        since = sub.withdrawn_at or sub.received_at
        if since + graces[sub.agreement_id] > now:
            continue
        report.submissions.append(_shred_submission(session, ctx, sub, now))
    session.flush()
    return report


def settle_withdrawals(
    session: Session, ctx: RequestContext, now: datetime
) -> list[dict[str, Any]]:
    """Record the scheduled withdrawals that have taken effect by ``now``: status ``withdrawn``
    from their effective time, one audit event each. Flushes only."""
    due = session.scalars(
        select(Submission)
        .where(
            Submission.status == "accepted",
            Submission.withdrawal_effective_at.is_not(None),
            Submission.withdrawal_effective_at <= now,
        )
        .order_by(Submission.id)
    ).all()
    settled = []
    for sub in due:
        effective_at = sub.withdrawal_effective_at
        assert effective_at is not None
        sub.status = "withdrawn"
        sub.withdrawn_at = effective_at
        session.flush()
        requested = sub.withdrawal_requested_at
        record(
            session,
            ctx,
            AuditRecord(
                action=AuditAction.SUBMISSION_WITHDRAWAL_EFFECTIVE,
                resource_type="submission",
                resource_id=sub.id,
                agreements=[(sub.agreement_id, sub.agreement_version)],
                counts={"rows": sub.row_count},
                detail=f"withdrawal took effect at {effective_at.isoformat()}"
                + (f" (requested at {requested.isoformat()})" if requested else ""),
            ),
        )
        settled.append(
            {"submission": sub.id, "effective_at": effective_at.isoformat(), "rows": sub.row_count}
        )
    return settled


def _shred_agreement(
    session: Session, ctx: RequestContext, end: AgreementEnd, now: datetime
) -> dict[str, Any]:
    keys = session.scalars(
        select(DataKey).where(
            DataKey.agreement_id == end.agreement_id, DataKey.destroyed_at.is_(None)
        )
    ).all()
    for key in keys:
        vault.destroy_data_key(key, now)
    subs = session.scalars(
        select(Submission).where(
            Submission.agreement_id == end.agreement_id, Submission.status.in_(SHREDDABLE)
        )
    ).all()
    rows = 0
    for sub in subs:
        _delete_segment(session, sub.id)
        if sub.status == "accepted":
            rows += sub.row_count
        sub.status = "purged"
        sub.purged_at = now
    session.flush()
    detail = (
        f"crypto-shredded: agreement {end.reason} at {end.ended_at.isoformat()}, "
        f"grace period {end.grace.days} day(s)"
    )
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RECORDS_PURGE,
            resource_type="agreement",
            resource_id=end.agreement_id,
            agreements=[(end.agreement_id, end.version)],
            counts={"data_keys": len(keys), "submissions": len(subs), "rows": rows},
            detail=detail,
        ),
    )
    _notify_purge(
        session,
        end.agreement_id,
        end.version,
        {"scope": "agreement", "reason": end.reason, "submissions": len(subs)},
        now,
    )
    log.info(
        "agreement data purged",
        extra={
            "fields": {
                "agreement": end.agreement_id,
                "data_keys": len(keys),
                "submissions": len(subs),
            }
        },
    )
    return {
        "agreement": end.agreement_id,
        "version": end.version,
        "reason": end.reason,
        "ended_at": end.ended_at.isoformat(),
        "data_keys": [k.id for k in keys],
        "submissions": len(subs),
        "rows": rows,
    }


def _shred_submission(
    session: Session, ctx: RequestContext, sub: Submission, now: datetime
) -> dict[str, Any]:
    reason = sub.status
    _delete_segment(session, sub.id)
    sub.status = "purged"
    sub.purged_at = now
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.SUBMISSION_PURGE,
            resource_type="submission",
            resource_id=sub.id,
            agreements=[(sub.agreement_id, sub.agreement_version)],
            counts={"rows": sub.row_count},
            detail=f"crypto-shredded: {reason}",
        ),
    )
    _notify_purge(
        session,
        sub.agreement_id,
        sub.agreement_version,
        {"scope": "submission", "reason": reason, "submission": sub.id, "dataset": sub.dataset},
        now,
    )
    return {"submission": sub.id, "reason": reason, "rows": sub.row_count}


def _notify_purge(
    session: Session, agreement_id: str, version: int, data: dict[str, Any], now: datetime
) -> None:
    row = agreement_repo.get_version(session, agreement_id, version)
    emit(
        session,
        EventType.RECORDS_PURGED,
        {"agreement": {"id": agreement_id, "version": version}, **data},
        now=now,
        agreements=[terms_of(row)] if row is not None else [],
        datasets=(data["dataset"],) if "dataset" in data else (),
    )


def scrub(engine: Engine, attempts: int = 20) -> bool:
    """Erase the bytes a committed purge freed; True when nothing is left behind.

    SQLite: a truncating checkpoint folds the WAL (and its old frames) into the zeroed database
    file; it cannot complete while another connection reads, so it is retried for a while.
    PostgreSQL: ``VACUUM FULL`` rewrites the key tables so that dead row versions holding a
    wrapped key are gone from the data files.
    """
    if engine.dialect.name == "sqlite":
        # On the driver connection itself: a checkpoint cannot run inside a transaction, and
        # SQLAlchemy would begin one.
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            for attempt in range(attempts):
                busy, _log, _done = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return True
                time.sleep(min(0.05 * (attempt + 1), 0.5))
        finally:
            raw.close()
        return False
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return _scrub_postgres(conn, attempts)
    return False  # pragma: no cover - only SQLite and PostgreSQL are supported


_NOT_REMOVABLE = re.compile(r"(\d+) dead row versions? cannot be removed yet")


def _scrub_postgres(conn: Connection, attempts: int) -> bool:
    """``VACUUM FULL`` the key tables once no transaction could still see the purged rows.

    A dead row version is kept while any snapshot might see it: one of a transaction in this
    database that began before the purge (an autoanalyze, a long report), or, through the
    vacuum's own snapshot, a transaction anywhere in the cluster that is older than the purge.
    Wait for both (bounded), then check the vacuum's own account of rows it had to keep.
    """
    started = conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
    after_purge = conn.exec_driver_sql("SELECT pg_current_xact_id()::text").scalar_one()
    kept: list[int] = []
    raw = conn.connection.dbapi_connection

    def on_notice(diag: Any) -> None:
        found = _NOT_REMOVABLE.search(diag.message_detail or "")
        if found:
            kept.append(int(found.group(1)))

    raw.add_notice_handler(on_notice)  # type: ignore[union-attr]
    try:
        for attempt in range(attempts * 5):
            waiting = conn.exec_driver_sql(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL"
                " AND xact_start < %(started)s)"
                " + (pg_snapshot_xmin(pg_current_snapshot()) <= %(xid)s::xid8)::int",
                {"started": started, "xid": after_purge},
            ).scalar_one()
            if not waiting:
                kept.clear()
                for table in KEY_TABLES:
                    conn.exec_driver_sql(f"VACUUM (FULL, VERBOSE) {table}")
                if not any(kept):
                    conn.exec_driver_sql("VACUUM segment_parts")
                    return True
            time.sleep(min(0.05 * (attempt + 1), 0.5))
        return False
    finally:
        raw.remove_notice_handler(on_notice)  # type: ignore[union-attr]


def rewrap(session: Session, ctx: RequestContext, old: MasterKey, new: MasterKey) -> int:
    """Re-wrap every live data key from ``old`` to ``new`` and audit it; flushes only."""
    count = vault.rewrap_all(session, old, new)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.KEYS_REWRAP,
            resource_type="data_key",
            counts={"data_keys": count},
            detail=f"data keys re-wrapped under master key {new.fingerprint()}",
        ),
    )
    return count


# -- scratch space of uploads in progress --------------------------------------------------------


def scratch_root(data_dir: Path) -> Path:
    return data_dir / "tmp" / "uploads" / hostname()


def new_scratch(data_dir: Path) -> Path:
    """A private directory for one upload, named after this process so it can be swept."""
    root = scratch_root(data_dir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = process_token().rsplit("/", 2)
    path = root / f"{owner[1]}.{owner[2]}.{new_id('up')}"
    path.mkdir(mode=0o700)
    return path


def sweep_scratch(data_dir: Path) -> int:
    """Remove the upload directories of processes that no longer run on this host.

    They hold only ciphertext under keys that died with their process, but no trace of an
    interrupted submission may linger.
    """
    root = scratch_root(data_dir)
    if not root.is_dir():
        return 0
    removed = 0
    for entry in root.iterdir():
        pid, _, rest = entry.name.partition(".")
        started = rest.partition(".")[0]
        if owner_alive(f"{hostname()}/{pid}/{started}") is False:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def clean_reservations(sessions: sessionmaker[Session], now: datetime) -> int:
    """Delete Idempotency-Key reservations left by requests that can no longer finish: their
    process on this host is gone, or their lease lapsed. (They would not block anyway; this
    removes the trace.)"""
    removed = 0
    with sessions() as session:
        for row in session.scalars(select(IdempotencyReservation)):
            if row.lease_until <= now or owner_alive(row.owner) is False:
                session.delete(row)
                removed += 1
        session.commit()
    return removed


def housekeeping(sessions: sessionmaker[Session], data_dir: Path, now: datetime) -> int:
    """What an interrupted upload may leave: its scratch directory and its reservation."""
    return sweep_scratch(data_dir) + clean_reservations(sessions, now)


def purge_and_scrub(
    sessions: sessionmaker[Session],
    engine: Engine,
    now: datetime,
    data_dir: Path | None = None,
    *,
    scrub_attempts: int = 20,
    upload_dir: Path | None = None,
) -> PurgeReport:
    """The start-up check and ``backbone records purge``: purge, commit, scrub, and clear what
    interrupted uploads left behind, and the bytes of resumable uploads that expired (under
    ``upload_dir``, by default ``data_dir/uploads``). Call it from the application's start-up."""
    from records.uploads import purge_expired

    ctx = RequestContext(new_id("purge"), now, None)
    with sessions() as session:
        report = purge(session, ctx, now)
        session.commit()
    if report.purged_anything:
        report.scrubbed = scrub(engine, scrub_attempts)
    if data_dir is not None:
        report.scratch_removed = sweep_scratch(data_dir)
    directory = upload_dir or (data_dir / "uploads" if data_dir is not None else None)
    if directory is not None:
        report.uploads_removed = purge_expired(sessions, directory, now)
    clean_reservations(sessions, now)
    return report
