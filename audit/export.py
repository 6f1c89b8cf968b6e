"""Exporting the log: every event from 0 to a checkpoint's tree size, streamed in index order.

An export always covers a whole prefix of the log, so ``backbone audit verify`` can recompute the
tree and compare it with the signed root. With filters, the events that do not match are still
present as index and leaf hash only (see ``audit.canonical``): the file stays verifiable while
carrying only the events asked for. Rows are read in batches by index range, each in its own
short read (events below a checkpoint never change), so an export of millions of events streams
in constant memory and holds no transaction open.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit import checkpoints
from audit.actions import AuditAction
from audit.canonical import (
    EXPORT_COLUMNS,
    canonical_bytes,
    csv_row,
    csv_withheld_row,
    ndjson_line,
    ndjson_withheld,
)
from audit.integrity import EVENT_COLUMNS, entry_from_row
from audit.models import AuditEvent
from audit.note import LogSigner
from audit.proofs import head_size
from audit.queries import EventFilter, authorize_auditor
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import InvalidInput
from policy.model import Decision

FORMATS = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
BATCH = 2000


@dataclass(frozen=True)
class ExportPlan:
    tree_size: int
    format: str
    filters: EventFilter

    @property
    def media_type(self) -> str:
        return FORMATS[self.format]

    @property
    def filename(self) -> str:
        return f"audit-{self.tree_size}.{self.format}"


def plan(
    session: Session,
    ctx: RequestContext,
    signer: LogSigner,
    *,
    fmt: str,
    tree_size: int | None,
    filters: EventFilter,
) -> ExportPlan:
    """Authorize an auditor's export, fix its tree size and audit it (before any byte is sent).

    ``tree_size`` defaults to the latest checkpoint, made now if the log has grown since.
    """
    decision = authorize_auditor(ctx)
    return _plan(session, ctx, signer, fmt, tree_size, filters, decision)


def operator_plan(
    session: Session,
    ctx: RequestContext,
    signer: LogSigner,
    *,
    fmt: str,
    tree_size: int | None,
    filters: EventFilter,
) -> ExportPlan:
    """An export by the operator's command line (database access, no token); audited too."""
    if ctx.principal is not None:
        raise ValueError("operator exports have no principal")
    return _plan(session, ctx, signer, fmt, tree_size, filters, None)


def _plan(
    session: Session,
    ctx: RequestContext,
    signer: LogSigner,
    fmt: str,
    tree_size: int | None,
    filters: EventFilter,
    decision: Decision | None,
) -> ExportPlan:
    if fmt not in FORMATS:
        raise InvalidInput("format must be ndjson or csv.")
    if tree_size is None:
        row = checkpoints.create(session, signer, ctx.now)
        size = row.tree_size if row is not None else 0
    else:
        current = head_size(session)
        if not 0 <= tree_size <= current:
            raise InvalidInput(f"The tree size must be between 0 and {current}.")
        size = tree_size
    detail = f"format={fmt}" + (f"; {filters.describe()}" if not filters.is_empty else "")
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.AUDIT_EXPORT,
            resource_type="audit_log",
            decision=decision,
            counts={"tree_size": size},
            detail=detail,
        ),
    )
    return ExportPlan(size, fmt, filters)


def _batches(sessions: sessionmaker[Session], size: int) -> Iterator[list[Any]]:
    for lo in range(0, size, BATCH):
        with sessions() as session:
            rows = session.execute(
                select(*EVENT_COLUMNS)
                .where(AuditEvent.idx >= lo, AuditEvent.idx < min(lo + BATCH, size))
                .order_by(AuditEvent.idx)
            ).all()
        # The rows are streamed as stored, gaps included: finding tampering is the verifier's job.
        yield list(rows)


def stream(sessions: sessionmaker[Session], export: ExportPlan) -> Iterator[bytes]:
    """The export's bytes, a batch of events at a time."""
    filters = export.filters
    everything = filters.is_empty
    if export.format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        for rows in _batches(sessions, export.tree_size):
            for row in rows:
                entry, at, leaf = entry_from_row(row)
                if everything or filters.matches(entry, at):
                    writer.writerow(csv_row(entry, leaf))
                else:
                    writer.writerow(csv_withheld_row(entry["index"], leaf))
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        if export.tree_size == 0:
            yield buffer.getvalue().encode()
        return
    for rows in _batches(sessions, export.tree_size):
        out = []
        for row in rows:
            entry, at, leaf = entry_from_row(row)
            if everything or filters.matches(entry, at):
                out.append(ndjson_line(canonical_bytes(entry), leaf))
            else:
                out.append(ndjson_withheld(entry["index"], leaf))
        yield b"".join(out)
