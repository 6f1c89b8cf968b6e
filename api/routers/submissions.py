"""Submissions: streamed record uploads, receipts, withdrawal."""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import Policy, UnitOfWork, audited, require, state
from core.context import RequestContext
from core.errors import InvalidInput
from records import service
from records.intake import IntakeLimits

router = APIRouter(prefix="/v1", tags=["submissions"])
Writer = Annotated[RequestContext, Depends(require("records:write"))]
Reader = Annotated[RequestContext, Depends(require("submissions:read"))]
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
UPLOAD_PATH = re.compile(r"^/v1/datasets/[^/]+/submissions$")


async def _spool(request: Request, directory: Path) -> tuple[Path, str]:
    """Stream the body to a private temporary file, hashing it on the way."""
    digest = hashlib.sha256()
    fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)
    path = Path(name)
    async with await anyio.open_file(fd, "wb", closefd=True) as out:
        async for chunk in request.stream():
            if chunk:
                digest.update(chunk)
                await out.write(chunk)
    return path, digest.hexdigest()


@router.post(
    "/datasets/{dataset}/submissions",
    status_code=201,
    summary="Submit records (text/csv, application/x-ndjson, application/json; optionally gzip)",
    dependencies=[Depends(audited("submission.create", "dataset", "dataset"))],
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
) -> JSONResponse:
    st = state(request)
    if idempotency_key is not None and not _KEY.match(idempotency_key):
        raise InvalidInput("Idempotency-Key must be 1-255 visible ASCII characters.")
    tmp_root = st.settings.data_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root) as scratch:
        body, sha = await _spool(request, Path(scratch))
        limits = IntakeLimits(
            max_bytes=st.settings.max_submission_bytes,
            max_ratio=st.settings.max_decompression_ratio,
        )
        req = service.SubmissionRequest(
            dataset=dataset,
            body=body,
            content_type=request.headers.get("content-type"),
            content_encoding=request.headers.get("content-encoding"),
            body_sha256=sha,
            limits=limits,
            scratch=Path(scratch) / "decoded",
            period=period,
            replaces=replaces,
            idempotency_key=idempotency_key,
        )
        receipt, created = await run_in_threadpool(
            service.submit, session, ctx, st.master, policy, req
        )
    return JSONResponse(
        service.summary(receipt),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/submissions/{receipt.submission_id}"},
    )


@router.get("/submissions", summary="Your organization's submissions, newest first")
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
    summary="One of your submissions' receipt",
    dependencies=[Depends(audited("submission.read", "submission", "submission_id"))],
)
def get_submission(submission_id: str, session: UnitOfWork, ctx: Reader) -> dict[str, Any]:
    return service.summary(service.get(session, ctx, submission_id))


@router.delete(
    "/submissions/{submission_id}",
    summary="Withdraw a submission",
    dependencies=[Depends(audited("submission.withdraw", "submission", "submission_id"))],
)
def withdraw_submission(submission_id: str, session: UnitOfWork, ctx: Writer) -> dict[str, Any]:
    return service.summary(service.withdraw(session, ctx, submission_id))
