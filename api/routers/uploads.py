"""Resumable uploads: the tus 1.0.0 protocol (core, creation, termination, expiration).

For large files over unreliable links: a client creates an upload (``POST
/v1/datasets/{dataset}/uploads`` with ``Upload-Length``), sends its bytes with ``PATCH
/v1/uploads/{id}`` in one or more requests, and after a cut connection asks ``HEAD`` how many
arrived and goes on from there. When the last byte lands, the file goes through the same ingest
path as a submission sent in one request (:func:`api.routers.submissions.submit`), and ``GET
/v1/uploads/{id}`` shows the receipt or the problem.

The server side is written here rather than taken from a library: the Python tus servers are
small single-maintainer projects with no hook for authentication or for who owns an upload, and
the protocol's three verbs are little code next to those two concerns. Clients use a tus client
library (``backbone submit`` uses tuspy, the tus project's own).

Bytes are written to one file per upload under the upload directory (``BACKBONE_UPLOAD_DIR``)
and flushed as they arrive; the offset is recorded when the PATCH ends, however it ends (a cut
connection keeps what arrived). Only one PATCH of an upload runs at a time.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import IO, Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from api.deps import Policy, UnitOfWork, after_commit, audited, require, state
from api.errors import stored_problem
from api.routers.submissions import _KEY, Upload, submit
from api.schemas import UploadOut
from api.state import AppState
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import DomainError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from records import intake, service, uploads
from records.errors import TusVersionUnsupported
from records.models import ResumableUpload

router = APIRouter(prefix="/v1", tags=["uploads"])
Creator = Annotated[RequestContext, Depends(require("records:write", write=True))]
# A PATCH is one piece of an upload already counted against the write limit when created.
Owner = Annotated[RequestContext, Depends(require("records:write"))]
UploadId = Annotated[str, PathParam(max_length=64)]
TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"
OFFSET_TYPE = "application/offset+octet-stream"
_CHUNK = 1 << 20
# Refusals that say nothing of the upload itself: it stays complete but unprocessed, and a
# PATCH at its end (no bytes) tries again.
TRANSIENT = ("idempotency-in-flight", "database-unavailable", "service-not-ready")


def upload_dir(st: AppState) -> Path:
    """Where the bytes of uploads in progress wait (created private on first use)."""
    directory = st.settings.upload_dir or st.settings.data_dir / "uploads"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def _tus(version: str | None) -> None:
    if version != TUS_VERSION:
        raise TusVersionUnsupported(
            f"Send Tus-Resumable: {TUS_VERSION}.", extra={"tus_version": TUS_VERSION}
        )


def _headers(row: ResumableUpload, **extra: str) -> dict[str, str]:
    return {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(row.offset),
        "Upload-Length": str(row.length),
        "Upload-Expires": format_datetime(row.expires_at, usegmt=True),
        "Cache-Control": "no-store",
        **extra,
    }


def _length(value: str | None, limit: int) -> int:
    if value is None or not value.isdigit() or len(value) > 19:
        raise InvalidInput("Upload-Length must be given, as a number of bytes.")
    length = int(value)
    if length < 1:
        raise InvalidInput("Upload-Length must be at least 1: an upload has a body.")
    if length > limit:
        raise PayloadTooLarge(f"Upload-Length exceeds the limit of {limit} bytes.")
    return length


@router.options(
    "/uploads",
    status_code=204,
    summary="The tus protocol's version, extensions and maximum size",
    response_class=Response,
)
def tus_options(request: Request) -> Response:
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(state(request).settings.max_submission_bytes),
        },
    )


@router.post(
    "/datasets/{dataset}/uploads",
    status_code=201,
    summary="Create a resumable upload (tus 1.0.0 creation)",
    description="Headers: Tus-Resumable: 1.0.0, Upload-Length (bytes, at most the submission "
    "size limit), optionally Upload-Metadata (base64 values of period, replaces, sheet, "
    "content-type, content-encoding) and Idempotency-Key. The same checks as a submission are "
    "made now (the dataset, your permission, the replaced submission, the media type). 201 "
    "with Location /v1/uploads/{id}; a repeated Idempotency-Key answers the upload it created.",
    response_class=Response,
    dependencies=[Depends(audited(AuditAction.UPLOAD_CREATE, "dataset", "dataset"))],
)
async def create_upload(
    dataset: Annotated[str, PathParam(max_length=64)],
    request: Request,
    session: UnitOfWork,
    ctx: Creator,
    policy: Policy,
    tus_resumable: Annotated[str | None, Header()] = None,
    upload_length: Annotated[str | None, Header()] = None,
    upload_metadata: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    _tus(tus_resumable)
    st = state(request)
    length = _length(upload_length, st.settings.max_submission_bytes)
    params = uploads.parse_metadata(upload_metadata)
    if idempotency_key is not None and not _KEY.match(idempotency_key):
        raise InvalidInput("Idempotency-Key must be 1-255 visible ASCII characters.")
    # What a submission would refuse before reading its body is refused now, not after the
    # last byte of a large file.
    intake.media_format(params.content_type)
    intake.content_coding(params.content_encoding)
    directory = upload_dir(st)

    def work() -> tuple[ResumableUpload, bool]:
        opening = service.open_submission(
            session,
            ctx,
            st.master,
            policy,
            dataset,
            idempotency_key=idempotency_key,
            period=params.period,
            replaces=params.replaces,
        )
        return uploads.create(
            session,
            ctx,
            dataset,
            length=length,
            params=params,
            key_hash=opening.idempotency_key,
            expiry=timedelta(hours=st.settings.upload_expiry_hours),
            directory=directory,
        )

    row, created = await run_in_threadpool(work)
    extra = {"Location": f"/v1/uploads/{row.id}"}
    if not created:
        extra["Idempotent-Replayed"] = "true"
    return Response(status_code=201, headers=_headers(row, **extra))


@router.head(
    "/uploads/{upload_id}",
    summary="How many bytes of the upload have arrived (tus core)",
    response_class=Response,
)
def upload_offset(upload_id: UploadId, session: UnitOfWork, ctx: Owner) -> Response:
    row = uploads.receiving(session, ctx, upload_id)
    return Response(status_code=200, headers=_headers(row))


@router.get(
    "/uploads/{upload_id}",
    response_model=UploadOut,
    summary="An upload's state, and its receipt or problem once complete",
    description="state: receiving, complete (submission holds the receipt), refused (problem "
    "holds the problem document) or expired.",
    dependencies=[Depends(audited(AuditAction.UPLOAD_READ, "upload", "upload_id"))],
)
def get_upload(
    upload_id: UploadId, request: Request, session: UnitOfWork, ctx: Owner
) -> JSONResponse:
    row = uploads.own(session, ctx, upload_id)
    state_ = row.state
    if state_ == uploads.RECEIVING and row.expires_at <= ctx.now:
        state_ = uploads.EXPIRED
    body: dict[str, Any] = {
        "id": row.id,
        "dataset": row.dataset,
        "state": state_,
        "offset": row.offset,
        "length": row.length,
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "submission": None,
        "problem": None,
    }
    if row.submission_id is not None:
        body["submission"] = service.summary(service.get(session, ctx, row.submission_id))
    elif row.problem is not None:
        body["problem"] = stored_problem(row.problem, getattr(request.state, "request_id", None))
    else:
        record(
            session,
            ctx,
            AuditRecord(action=AuditAction.UPLOAD_READ, resource_type="upload", resource_id=row.id),
        )
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.delete(
    "/uploads/{upload_id}",
    status_code=204,
    summary="Terminate an upload (tus termination): its bytes are deleted",
    response_class=Response,
    dependencies=[Depends(audited(AuditAction.UPLOAD_TERMINATE, "upload", "upload_id"))],
)
def delete_upload(
    upload_id: UploadId,
    request: Request,
    session: UnitOfWork,
    ctx: Creator,
    tus_resumable: Annotated[str | None, Header()] = None,
) -> Response:
    _tus(tus_resumable)
    uploads.terminate(session, ctx, upload_id, upload_dir(state(request)))
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})


async def _from_disk(path: Path) -> AsyncIterator[bytes]:
    fh = await anyio.open_file(path, "rb")
    try:
        while chunk := await fh.read(_CHUNK):
            yield chunk
    finally:
        await fh.aclose()


def _open_at(path: Path, offset: int) -> IO[bytes]:
    fh = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - closed by the caller
    # Bytes past the recorded offset (a PATCH whose end was never recorded) are dropped.
    fh.truncate(offset)
    fh.seek(offset)
    return fh


def _close(fh: IO[bytes], *, sync: bool) -> None:
    try:
        fh.flush()
        if sync:
            os.fsync(fh.fileno())
    finally:
        fh.close()


@router.patch(
    "/uploads/{upload_id}",
    status_code=204,
    summary="Append bytes to an upload at Upload-Offset (tus core)",
    description="Content-Type: application/offset+octet-stream; Upload-Offset must be the "
    "upload's offset (409 otherwise: ask HEAD). 204 with the new Upload-Offset. When the last "
    "byte arrives the upload is ingested as a submission, in this request: 204 with Location "
    "of the submission, or the submission's problem document (also kept for GET).",
    response_class=Response,
    dependencies=[Depends(audited(AuditAction.UPLOAD_APPEND, "upload", "upload_id"))],
)
async def append(
    upload_id: UploadId,
    request: Request,
    session: UnitOfWork,
    ctx: Owner,
    policy: Policy,
    tus_resumable: Annotated[str | None, Header()] = None,
    upload_offset: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
    content_length: Annotated[str | None, Header()] = None,
) -> Response:
    _tus(tus_resumable)
    if (content_type or "").split(";")[0].strip().lower() != OFFSET_TYPE:
        raise UnsupportedMediaType(f"A PATCH of an upload must be sent as {OFFSET_TYPE}.")
    if upload_offset is None or not upload_offset.isdigit() or len(upload_offset) > 19:
        raise InvalidInput("Upload-Offset must be given, as a number of bytes.")
    offset = int(upload_offset)
    st = state(request)
    directory = upload_dir(st)
    row = await run_in_threadpool(uploads.own, session, ctx, upload_id)
    if row.state in (uploads.COMPLETE, uploads.REFUSED) and offset == row.offset:
        # Every byte arrived and the outcome is known (GET shows it): nothing to append. A
        # client that lost the answer to its last PATCH converges here.
        await run_in_threadpool(session.commit)
        return Response(status_code=204, headers=_headers(row))
    if (
        content_length is not None
        and content_length.isdigit()
        and offset + int(content_length) > row.length
    ):
        raise PayloadTooLarge("The bytes would go past the upload's Upload-Length.")
    row = await run_in_threadpool(uploads.claim, session, ctx, upload_id, offset)
    path = uploads.file_of(directory, row.id)
    last = content_length is not None and content_length.isdigit()
    if last and offset + int(str(content_length)) == row.length:
        return await _last_piece(request, session, ctx, policy, row, path)
    received = offset
    too_long = False
    fh = await run_in_threadpool(_open_at, path, offset)
    try:
        pending: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                if received + size + len(chunk) > row.length:
                    too_long = True
                    break
                pending.append(chunk)
                size += len(chunk)
                if size >= _CHUNK:
                    await run_in_threadpool(fh.write, b"".join(pending))
                    received += size
                    pending, size = [], 0
        except ClientDisconnect:
            pass  # what arrived is kept: the client asks HEAD and resumes from there
        if pending and not too_long:
            await run_in_threadpool(fh.write, b"".join(pending))
            received += size
    finally:
        with anyio.CancelScope(shield=True):
            if too_long:
                # Bad input changes nothing: the upload stays where it was.
                await run_in_threadpool(fh.truncate, offset)
                received = offset
            await run_in_threadpool(partial(_close, fh, sync=True))
            complete = received == row.length and not too_long
            await run_in_threadpool(
                partial(uploads.advance, session, row.id, received, release=not complete)
            )
    if too_long:
        raise PayloadTooLarge("The bytes would go past the upload's Upload-Length.")
    row.offset = received
    if not complete:
        return Response(status_code=204, headers=_headers(row))
    return await _ingest(request, session, ctx, policy, row, path)


async def _last_piece(
    request: Request,
    session: Any,
    ctx: RequestContext,
    policy: Any,
    row: ResumableUpload,
    path: Path,
) -> Response:
    """A PATCH that carries the upload to its end: its bytes are ingested as they arrive
    (after those already on disk), while they are also written to the file, so that the last
    piece costs what a submission in one request costs rather than an upload and then a
    second pass. If the connection is cut, what arrived is kept as in any PATCH and the ingest
    is abandoned; a refusal is kept on the upload."""
    offset = row.offset
    fh = await run_in_threadpool(_open_at, path, offset)
    progress = {"received": offset, "cut": False, "too_long": False}

    async def body() -> AsyncIterator[bytes]:
        if offset:
            prefix = await anyio.open_file(path, "rb")
            try:
                left = offset
                while left and (chunk := await prefix.read(min(_CHUNK, left))):
                    left -= len(chunk)
                    yield chunk
            finally:
                await prefix.aclose()
        try:
            async for chunk in request.stream():
                if not chunk:
                    continue
                if progress["received"] + len(chunk) > row.length:
                    progress["too_long"] = True
                    raise PayloadTooLarge("The bytes would go past the upload's Upload-Length.")
                await run_in_threadpool(fh.write, chunk)
                progress["received"] += len(chunk)
                yield chunk
        except ClientDisconnect:
            progress["cut"] = True
            raise

    params = uploads.UploadParams.of(row.params)
    upload = Upload(body(), params.content_type, params.content_encoding)
    try:
        receipt, _replayed = await submit(
            row.dataset,
            request,
            session,
            ctx,
            policy,
            upload,
            None,
            params.period,
            params.replaces,
            params.sheet,
            key_hash=row.idempotency_key,
        )
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(session.rollback)
            if progress["too_long"]:
                await run_in_threadpool(fh.truncate, offset)
                progress["received"] = offset
            await run_in_threadpool(partial(_close, fh, sync=True))
            received = int(progress["received"])
            refused = (
                isinstance(exc, DomainError)
                and not progress["cut"]
                and not progress["too_long"]
                and exc.kind not in TRANSIENT
            )
            if refused:
                assert isinstance(exc, DomainError)
                await run_in_threadpool(uploads.advance, session, row.id, received, release=False)
                await run_in_threadpool(uploads.refuse, session, row.id, exc)
                await anyio.Path(path).unlink(missing_ok=True)
            else:
                await run_in_threadpool(uploads.advance, session, row.id, received, release=True)
        if progress["cut"]:
            # The client is gone; what arrived is recorded for its HEAD.
            row.offset = int(progress["received"])
            return Response(status_code=204, headers=_headers(row))
        raise
    await run_in_threadpool(partial(_close, fh, sync=True))
    await run_in_threadpool(
        partial(uploads.finish, session, row.id, receipt.submission_id, offset=row.length)
    )
    row.offset = row.length
    after_commit(request, partial(path.unlink, missing_ok=True))
    return Response(
        status_code=204,
        headers=_headers(row, Location=f"/v1/submissions/{receipt.submission_id}"),
    )


async def _ingest(
    request: Request,
    session: Any,
    ctx: RequestContext,
    policy: Any,
    row: ResumableUpload,
    path: Path,
) -> Response:
    """Every byte arrived: the one ingest path, over the file. A refusal is kept on the upload
    (and answered); an error of the service (a lost database, ...) leaves the upload complete
    but unprocessed, so that a PATCH at its end (no bytes) tries again."""
    params = uploads.UploadParams.of(row.params)
    body = Upload(_from_disk(path), params.content_type, params.content_encoding)
    try:
        receipt, _replayed = await submit(
            row.dataset,
            request,
            session,
            ctx,
            policy,
            body,
            None,
            params.period,
            params.replaces,
            params.sheet,
            key_hash=row.idempotency_key,
        )
        await run_in_threadpool(uploads.finish, session, row.id, receipt.submission_id)
    except DomainError as exc:
        if exc.kind in TRANSIENT:
            await run_in_threadpool(uploads.advance, session, row.id, row.offset, release=True)
            raise
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(session.rollback)
            await run_in_threadpool(uploads.refuse, session, row.id, exc)
            await anyio.Path(path).unlink(missing_ok=True)
        raise
    except BaseException:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(session.rollback)
            await run_in_threadpool(uploads.advance, session, row.id, row.offset, release=True)
        raise
    # The file goes once the submission is committed (the unit of work commits after this
    # returns); if that commit fails, the bytes are still there for a retry.
    after_commit(request, partial(path.unlink, missing_ok=True))
    return Response(
        status_code=204,
        headers=_headers(row, Location=f"/v1/submissions/{receipt.submission_id}"),
    )
