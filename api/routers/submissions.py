"""Submissions: streamed record uploads, receipts, withdrawal.

An upload is checked as far as it can be before the body is read (scope, policy, content type,
replacement target, Idempotency-Key), then streamed: the body is hashed as it arrives and handed
through a bounded pipe to a worker thread that parses, validates, pseudonymizes and seals it
while the rest is still arriving. The database is touched again only at the end, in one short
transaction, so a slow upload holds neither a connection nor a lock.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect

from api import metrics
from api.dbfaults import retry_once
from api.deps import Policy, UnitOfWork, after_commit, audited, require, state
from api.schemas import ReceiptOut, ReceiptPage
from api.state import AppState
from audit.actions import AuditAction
from core.context import RequestContext
from core.errors import DomainError, InvalidInput
from policy.engine import PolicySet
from records import idempotency, intake, retention, service
from records.errors import IncompleteBody, SubmissionRejected
from records.idempotency import Reservation
from records.ingest import IngestSpec, Prepared, ingest

router = APIRouter(prefix="/v1", tags=["submissions"])
Writer = Annotated[RequestContext, Depends(require("records:write", write=True))]
Reader = Annotated[RequestContext, Depends(require("submissions:read"))]
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# The API's upload, a resumable upload's PATCH and the console's upload form: the upload size
# limit, not the body limit.
UPLOAD_PATH = re.compile(
    r"^/(v1/datasets/[^/]+/submissions|v1/uploads/[^/]+|console/datasets/[^/]+/upload)$"
)
_swept: set[Path] = set()
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        "The records, streamed: UTF-8 CSV with a header row (delimited by ',', ';' or tab, told "
        "from the header), NDJSON, a JSON array of flat objects, or an .xlsx or .ods spreadsheet "
        "(the first sheet, or ?sheet=NAME); optionally with Content-Encoding: gzip. Send an "
        "Idempotency-Key to retry safely."
    ),
    "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
            "schema": {"type": "string", "format": "binary"}
        },
        "application/vnd.oasis.opendocument.spreadsheet": {
            "schema": {"type": "string", "format": "binary"}
        },
    },
}
log = logging.getLogger("backbone.records")


def _first_error(exc: BaseException) -> BaseException:
    """The exception to report from a task group: the root cause, preferring domain errors."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        else:
            leaves.append(item)
    for leaf in leaves:
        if isinstance(leaf, DomainError):
            return leaf
    for leaf in leaves:
        if not isinstance(leaf, intake.BodyAborted | anyio.get_cancelled_exc_class()):
            return leaf
    return leaves[0]


async def _heartbeat(st: AppState, reservation: Reservation) -> None:
    while True:
        await anyio.sleep(idempotency.HEARTBEAT_SECONDS)
        await run_in_threadpool(idempotency.renew, st.sessions, reservation, st.clock())


async def _receive(
    body: AsyncIterator[bytes], st: AppState, spec: IngestSpec, reservation: Reservation | None
) -> tuple[Prepared, str]:
    """Stream the body into the ingest pipeline; return its result and the body's SHA-256."""
    pipe = intake.BodyPipe()
    digest = hashlib.sha256()
    result: list[Prepared] = []

    async def feed() -> None:
        try:
            async for chunk in body:
                if chunk:
                    digest.update(chunk)
                    await pipe.feed(chunk)
        except ClientDisconnect:
            pipe.abort()
            raise IncompleteBody("The connection closed before the whole body arrived.") from None
        except BaseException:
            pipe.abort()
            raise
        pipe.finish()

    async def work() -> None:
        try:
            result.append(await anyio.to_thread.run_sync(ingest, pipe, spec))
        except BaseException:
            pipe.abort()
            raise

    try:
        async with anyio.create_task_group() as outer:
            if reservation is not None:
                outer.start_soon(_heartbeat, st, reservation)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(feed)
                    tg.start_soon(work)
            finally:
                outer.cancel_scope.cancel()
    except BaseException as exc:
        raise _first_error(exc) from None
    return result[0], digest.hexdigest()


async def _hash_body(body: AsyncIterator[bytes]) -> str:
    digest = hashlib.sha256()
    try:
        async for chunk in body:
            digest.update(chunk)
    except ClientDisconnect:
        raise IncompleteBody("The connection closed before the whole body arrived.") from None
    return digest.hexdigest()


def _receipt_response(receipt: service.Receipt, *, replayed: bool) -> JSONResponse:
    headers = {"Location": f"/v1/submissions/{receipt.submission_id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(service.summary(receipt), status_code=201, headers=headers)


@router.post(
    "/datasets/{dataset}/submissions",
    response_model=ReceiptOut,
    response_model_exclude_unset=True,
    status_code=201,
    summary="Submit records (CSV, NDJSON, JSON, .xlsx or .ods; optionally gzip)",
    dependencies=[Depends(audited(AuditAction.SUBMISSION_CREATE, "dataset", "dataset"))],
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def create_submission(
    dataset: str,
    request: Request,
    session: UnitOfWork,
    ctx: Writer,
    policy: Policy,
    idempotency_key: Annotated[str | None, Header()] = None,
    period: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9._-]+$")] = None,
    replaces: Annotated[str | None, Query(max_length=64)] = None,
    sheet: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="The sheet of a spreadsheet body to read (the first by default).",
        ),
    ] = None,
) -> JSONResponse:
    upload = Upload(
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-encoding"),
    )
    receipt, replayed = await submit(
        dataset, request, session, ctx, policy, upload, idempotency_key, period, replaces, sheet
    )
    return _receipt_response(receipt, replayed=replayed)


@dataclass(frozen=True)
class Upload:
    """A submission's body as it arrives, with what its headers (or a form's file part) say it
    is: the request's own stream for the API, a form's file part for the console."""

    body: AsyncIterator[bytes]
    content_type: str | None
    content_encoding: str | None


async def submit(
    dataset: str,
    request: Request,
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    upload: Upload,
    idempotency_key: str | None,
    period: str | None,
    replaces: str | None,
    sheet: str | None = None,
    *,
    key_hash: str | None = None,
) -> tuple[service.Receipt, bool]:
    """The one ingest path of ``POST /v1/datasets/{dataset}/submissions`` and of the console's
    upload form (and of a completed resumable upload): receive, check and store one submission,
    counted in the metrics; its receipt, and whether it was replayed. The caller has the route's
    scopes, audited action and unit of work. ``key_hash`` is an Idempotency-Key already hashed
    (a resumable upload keeps only the hash), in place of ``idempotency_key``."""
    try:
        receipt, replayed = await _submit(
            dataset,
            request,
            session,
            ctx,
            policy,
            upload,
            idempotency_key,
            period,
            replaces,
            sheet,
            key_hash=key_hash,
        )
    except DomainError as exc:
        metrics.submission_refused(exc, exc.rows if isinstance(exc, SubmissionRejected) else 0)
        raise
    # Counted once stored: the unit of work commits after this returns.
    after_commit(request, partial(metrics.submission_stored, receipt.row_count, replayed=replayed))
    return receipt, replayed


async def _submit(
    dataset: str,
    request: Request,
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    upload: Upload,
    idempotency_key: str | None,
    period: str | None,
    replaces: str | None,
    sheet: str | None = None,
    *,
    key_hash: str | None = None,
) -> tuple[service.Receipt, bool]:
    """Receive, check and store one submission: its receipt, and whether it was replayed."""
    st = state(request)
    if idempotency_key is not None and not _KEY.match(idempotency_key):
        raise InvalidInput("Idempotency-Key must be 1-255 visible ASCII characters.")
    fmt = intake.media_format(upload.content_type)
    coding = intake.content_coding(upload.content_encoding)
    assert ctx.principal is not None
    client_id = ctx.principal.client_id
    opening = await run_in_threadpool(
        partial(
            service.open_submission,
            session,
            ctx,
            st.master,
            policy,
            dataset,
            idempotency_key=idempotency_key,
            period=period,
            replaces=replaces,
            key_hash=key_hash,
        )
    )
    target, hashed, previous = opening.target, opening.idempotency_key, opening.previous
    # End the transaction authentication opened: an upload may take minutes, and must hold
    # neither a pooled connection nor (on SQLite) the write lock meanwhile.
    await run_in_threadpool(session.commit)

    if previous is not None:
        sha = await _hash_body(upload.body)
        receipt = await run_in_threadpool(service.replay, session, ctx, previous, dataset, sha)
        return receipt, True

    data_dir = st.settings.data_dir
    if data_dir not in _swept:
        # Once per process: clear what uploads interrupted by a crash left behind.
        _swept.add(data_dir)
        try:
            await run_in_threadpool(retention.housekeeping, st.sessions, data_dir, st.clock())
        except Exception:  # housekeeping must never fail an upload; the start-up check retries
            log.exception("housekeeping of interrupted uploads failed")
    reservation = (
        await run_in_threadpool(
            idempotency.reserve,
            st.sessions,
            client_id,
            hashed,
            dataset,
            ctx.request_id,
            st.clock(),
        )
        if hashed is not None
        else None
    )
    scratch = retention.new_scratch(data_dir)
    try:
        spec = service.ingest_spec(
            ctx,
            st.master,
            policy,
            target,
            submission_id=service.new_submission_id(),
            fmt=fmt,
            coding=coding,
            limits=intake.IntakeLimits(
                max_bytes=st.settings.max_submission_bytes,
                max_ratio=st.settings.max_decompression_ratio,
            ),
            period=period,
            spill=scratch / "segment.sealed",
            sheet=sheet,
        )
        prepared, sha = await _receive(upload.body, st, spec, reservation)
        envelope = service.Envelope(
            body_sha256=sha,
            fmt=fmt,
            period=period,
            replaces=replaces,
            idempotency_key=hashed,
            reservation=reservation,
        )

        def store() -> tuple[service.Receipt, bool]:
            return service.store(
                session, ctx, st.master, st.policies.get(session), prepared, envelope
            )

        if hashed is not None:
            # Idempotent by its key: a connection lost while storing is retried once on a
            # fresh one (the body is already validated and sealed on disk).
            receipt, created = await run_in_threadpool(retry_once, store, session.rollback)
        else:
            receipt, created = await run_in_threadpool(store)
    except BaseException as exc:
        if isinstance(exc, SubmissionRejected):
            exc.notice = partial(
                service.notify_rejected, policy=policy, dataset=dataset, report=exc.extra["report"]
            )
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(session.rollback)
            if reservation is not None:
                await run_in_threadpool(idempotency.release, st.sessions, reservation)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return receipt, not created


@router.get(
    "/submissions",
    response_model=ReceiptPage,
    response_model_exclude_unset=True,
    summary="Your organization's submissions, newest first",
)
def list_submissions(
    session: UnitOfWork,
    ctx: Reader,
    dataset: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: str | None = None,
) -> dict[str, Any]:
    receipts = service.list_own(session, ctx, dataset=dataset, limit=limit, after=after)
    items = [service.summary(r) for r in receipts]
    return {"items": items, "next": items[-1]["id"] if len(items) == limit else None}


@router.get(
    "/submissions/{submission_id}",
    response_model=ReceiptOut,
    response_model_exclude_unset=True,
    summary="One of your submissions' receipt",
    dependencies=[Depends(audited(AuditAction.SUBMISSION_READ, "submission", "submission_id"))],
)
def get_submission(submission_id: str, session: UnitOfWork, ctx: Reader) -> dict[str, Any]:
    return service.summary(service.get(session, ctx, submission_id))


@router.delete(
    "/submissions/{submission_id}",
    response_model=ReceiptOut,
    response_model_exclude_unset=True,
    summary="Withdraw a submission",
    description="Under the agreement's withdrawal terms: refused (403 withdrawal-not-allowed) "
    "when it says allowed: false; at once when notice_days is 0; otherwise scheduled, and the "
    "receipt's withdrawal says when it takes effect (the submission stays in use until then).",
    dependencies=[Depends(audited(AuditAction.SUBMISSION_WITHDRAW, "submission", "submission_id"))],
)
def withdraw_submission(submission_id: str, session: UnitOfWork, ctx: Writer) -> dict[str, Any]:
    return service.summary(service.withdraw(session, ctx, submission_id))


@router.delete(
    "/submissions/{submission_id}/withdrawal",
    response_model=ReceiptOut,
    response_model_exclude_unset=True,
    summary="Cancel a scheduled withdrawal before it takes effect",
    dependencies=[
        Depends(audited(AuditAction.SUBMISSION_WITHDRAWAL_CANCEL, "submission", "submission_id"))
    ],
)
def cancel_withdrawal(submission_id: str, session: UnitOfWork, ctx: Writer) -> dict[str, Any]:
    return service.summary(service.cancel_withdrawal(session, ctx, submission_id))
