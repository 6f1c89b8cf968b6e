"""Resumable uploads (tus 1.0.0): the rows that say how far an upload has come and how it ended.

The HTTP side is in :mod:`api.routers.uploads`; this module holds what is decided against the
database: who may see an upload (only the client or person who created it: anyone else is
answered as if it did not exist), which PATCH may append (one at a time, at the recorded offset),
and what is purged when an upload expires. The bytes themselves wait in one file per upload under
the upload directory until the upload is complete, when they go through the same ingest path as
a submission sent in one request.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import ConcealedObject, DomainError, InvalidInput, NotFound
from core.ids import new_id
from records.errors import IdempotencyConflict, UploadExpired, UploadOffsetMismatch
from records.models import ResumableUpload

RECEIVING, COMPLETE, REFUSED, EXPIRED = "receiving", "complete", "refused", "expired"
# How long one PATCH (its bytes, then the ingest of a completed upload) holds an upload. It is
# released when the request ends, however it ends; the lease only matters if the process dies.
LEASE = timedelta(minutes=30)
# A finished (or expired) upload is kept this long after its expiry, for GET, then forgotten:
# the submission it made keeps its own receipt and Idempotency-Key.
KEEP = timedelta(days=7)
_PERIOD = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_METADATA_KEY = re.compile(r"^[!-+\--~]{1,64}$")  # visible ASCII, no comma
# Upload-Metadata keys Backbone reads; others (a tus client's filename, ...) are ignored.
PARAMS = ("period", "replaces", "sheet", "content-type", "content-encoding")


@dataclass(frozen=True)
class UploadParams:
    """What a submission needs besides its bytes, from the creation's Upload-Metadata."""

    period: str | None = None
    replaces: str | None = None
    sheet: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """As stored in ``uploads.params``."""
        return {
            "period": self.period,
            "replaces": self.replaces,
            "sheet": self.sheet,
            "content_type": self.content_type,
            "content_encoding": self.content_encoding,
        }

    @classmethod
    def of(cls, stored: dict[str, Any]) -> UploadParams:
        """From ``uploads.params``."""
        return cls(**{k: stored.get(k) for k in cls.__dataclass_fields__})


def parse_metadata(header: str | None) -> UploadParams:
    """Upload-Metadata: comma-separated ``key base64value`` pairs (tus 1.0.0, creation).

    ``filetype`` (what tus-js-client and Uppy send) stands for ``content-type`` when that is
    absent. Raises InvalidInput for a malformed header."""
    values: dict[str, str] = {}
    for pair in (header or "").split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, encoded = pair.partition(" ")
        if not _METADATA_KEY.match(key) or key in values or " " in encoded.strip():
            raise InvalidInput("Upload-Metadata must be comma-separated 'key base64value' pairs.")
        try:
            values[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInput(
                "An Upload-Metadata value is not base64-encoded UTF-8 text."
            ) from None
    period = values.get("period") or None
    if period is not None and not _PERIOD.match(period):
        raise InvalidInput("The period must be 1-32 letters, digits, '.', '_' or '-'.")
    replaces = values.get("replaces") or None
    if replaces is not None and len(replaces) > 64:
        raise InvalidInput("replaces must name a submission id.")
    sheet = values.get("sheet") or None
    if sheet is not None and len(sheet) > 100:
        raise InvalidInput("The sheet name must be at most 100 characters.")
    ctype = values.get("content-type") or values.get("filetype") or None
    coding = values.get("content-encoding") or None
    for value in (ctype, coding):
        if value is not None and len(value) > 128:
            raise InvalidInput("content-type and content-encoding must be short media names.")
    return UploadParams(period, replaces, sheet, ctype, coding)


def file_of(directory: Path, upload_id: str) -> Path:
    """The file an upload's bytes are written to (named by its unguessable id)."""
    return directory / upload_id


def create(
    session: Session,
    ctx: RequestContext,
    dataset: str,
    *,
    length: int,
    params: UploadParams,
    key_hash: str | None,
    expiry: timedelta,
    directory: Path,
) -> tuple[ResumableUpload, bool]:
    """A new upload, or (for a repeated Idempotency-Key) the one the key created before:
    ``(upload, created)``. The caller has checked that the client may submit to ``dataset``.
    An earlier upload under the key that was refused or expired is replaced (as a refused
    submission frees its key); one for a different dataset, length or parameters is refused."""
    assert ctx.principal is not None
    client_id = ctx.principal.client_id
    if key_hash is not None:
        earlier = session.scalars(
            select(ResumableUpload).where(
                ResumableUpload.client_id == client_id,
                ResumableUpload.idempotency_key == key_hash,
            )
        ).first()
        if earlier is not None:
            if earlier.state in (RECEIVING, COMPLETE) and earlier.expires_at > ctx.now:
                if (
                    earlier.dataset != dataset
                    or earlier.length != length
                    or earlier.params != params.as_dict()
                ):
                    raise IdempotencyConflict(
                        "This Idempotency-Key was already used for a different upload."
                    )
                return earlier, False
            file_of(directory, earlier.id).unlink(missing_ok=True)
            session.delete(earlier)
            session.flush()
    row = ResumableUpload(
        id=new_id("upl"),
        client_id=client_id,
        dataset=dataset,
        params=params.as_dict(),
        idempotency_key=key_hash,
        length=length,
        offset=0,
        state=RECEIVING,
        created_at=ctx.now,
        expires_at=ctx.now + expiry,
    )
    session.add(row)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.UPLOAD_CREATE,
            resource_type="upload",
            resource_id=row.id,
            detail=f"dataset {dataset}, {length} bytes",
        ),
    )
    session.flush()
    return row, True


def own(session: Session, ctx: RequestContext, upload_id: str) -> ResumableUpload:
    """The caller's upload; another client's is answered as one that does not exist."""
    assert ctx.principal is not None
    row = session.get(ResumableUpload, upload_id) if len(upload_id) <= 64 else None
    if row is None:
        raise NotFound("No such upload.")
    if row.client_id != ctx.principal.client_id:
        raise ConcealedObject("No such upload.")
    return row


def receiving(session: Session, ctx: RequestContext, upload_id: str) -> ResumableUpload:
    """The caller's upload, refused with 410 once it has expired."""
    row = own(session, ctx, upload_id)
    if row.state == EXPIRED or (row.state == RECEIVING and row.expires_at <= ctx.now):
        raise UploadExpired("The upload expired before it was completed; create a new one.")
    return row


def claim(session: Session, ctx: RequestContext, upload_id: str, offset: int) -> ResumableUpload:
    """Take the upload for one PATCH at ``offset``, committed so that a concurrent PATCH of
    the same upload sees it: refused (409) unless ``offset`` is the recorded offset and no
    other PATCH holds it."""
    row = receiving(session, ctx, upload_id)
    if row.offset != offset:
        raise UploadOffsetMismatch(
            f"The upload is at offset {row.offset}, not {offset}.", extra={"offset": row.offset}
        )
    taken = session.execute(
        update(ResumableUpload)
        .where(
            ResumableUpload.id == row.id,
            ResumableUpload.offset == offset,
            (ResumableUpload.busy_until.is_(None)) | (ResumableUpload.busy_until <= ctx.now),
        )
        .values(busy_until=ctx.now + LEASE)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise UploadOffsetMismatch(
            "Another request is appending to this upload; ask HEAD for the offset and retry.",
            extra={"offset": offset},
        )
    session.commit()
    session.refresh(row)
    return row


def advance(session: Session, upload_id: str, offset: int, *, release: bool) -> None:
    """Record how far the bytes have come (and, with ``release``, let the next PATCH in)."""
    values: dict[str, Any] = {"offset": offset}
    if release:
        values["busy_until"] = None
    session.execute(
        update(ResumableUpload)
        .where(ResumableUpload.id == upload_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def finish(
    session: Session, upload_id: str, submission_id: str, *, offset: int | None = None
) -> None:
    """The upload became a submission (stored, or the original one replayed): in the
    transaction that stores it (with its final ``offset`` when the bytes came in it)."""
    values: dict[str, Any] = {"state": COMPLETE, "submission_id": submission_id}
    values["busy_until"] = None
    if offset is not None:
        values["offset"] = offset
    session.execute(
        update(ResumableUpload)
        .where(ResumableUpload.id == upload_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def refuse(session: Session, upload_id: str, exc: DomainError) -> None:
    """The complete upload was refused: keep the problem (never record values) for GET."""
    problem = {
        "kind": exc.kind,
        "title": exc.title,
        "detail": exc.detail,
        **({"extra": exc.extra} if exc.extra else {}),
    }
    session.execute(
        update(ResumableUpload)
        .where(ResumableUpload.id == upload_id)
        .values(state=REFUSED, problem=problem, busy_until=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def terminate(session: Session, ctx: RequestContext, upload_id: str, directory: Path) -> None:
    """tus termination: the upload and its bytes are gone; a submission it made stays."""
    row = own(session, ctx, upload_id)
    if row.busy_until is not None and row.busy_until > ctx.now:
        raise UploadOffsetMismatch(
            "A request is appending to this upload; retry when it has ended.",
            extra={"offset": row.offset},
        )
    file_of(directory, row.id).unlink(missing_ok=True)
    session.delete(row)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.UPLOAD_TERMINATE, resource_type="upload", resource_id=row.id
        ),
    )


def purge_expired(sessions: sessionmaker[Session], directory: Path, now: datetime) -> int:
    """Expire the uploads not completed in time and delete their bytes, and delete files that
    belong to no upload (left by a terminated or replaced upload whose deletion was cut short).
    Returns how many files were removed."""
    removed = 0
    with sessions() as session:
        expired = session.scalars(
            select(ResumableUpload.id).where(
                ResumableUpload.state == RECEIVING,
                ResumableUpload.expires_at <= now,
                (ResumableUpload.busy_until.is_(None)) | (ResumableUpload.busy_until <= now),
            )
        ).all()
        if expired:
            session.execute(
                update(ResumableUpload)
                .where(ResumableUpload.id.in_(expired))
                .values(state=EXPIRED, busy_until=None)
                .execution_options(synchronize_session=False)
            )
        session.execute(
            delete(ResumableUpload)
            .where(ResumableUpload.state != RECEIVING, ResumableUpload.expires_at <= now - KEEP)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        live = set(
            session.scalars(
                select(ResumableUpload.id).where(ResumableUpload.state == RECEIVING)
            ).all()
        )
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.is_file() and entry.name.startswith("upl_") and entry.name not in live:
                entry.unlink(missing_ok=True)
                removed += 1
    return removed
