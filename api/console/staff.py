"""Partner staff's console: the datasets their organization may submit, each one's fields and
template, the upload form, the receipt or the validation report, their organization's
submissions and withdrawal.

Every page calls what the JSON route of :mod:`api.routers.datasets` or
:mod:`api.routers.submissions` calls, with the signed-in person's request context holding the
scopes that route requires, under the same audited action. The upload form goes through
:func:`api.routers.submissions.submit`, the one ingest path of ``POST
/v1/datasets/{dataset}/submissions`` (the same policy decision, limits, formats, gzip,
idempotency, scratch file and metrics): a page stores nothing an API call by that person could
not, and the audit log names the person.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from api.console.auth import check_csrf, signed_in
from api.console.pages import confirm_page, error_page, page
from api.deps import Policy, UnitOfWork, audited, state
from api.routers import submissions as submissions_api
from api.routers.audit import inclusion_proof
from audit.actions import AuditAction
from core.context import RequestContext
from core.errors import Conflict, DomainError, InvalidInput
from records import datasets, intake, service
from records.errors import SubmissionRejected

router = APIRouter(include_in_schema=False)
# The scopes of the API routes each page stands for.
Writer = Annotated[RequestContext, Depends(signed_in("records:write"))]
Reader = Annotated[RequestContext, Depends(signed_in("submissions:read"))]
PAGE_SIZE = 50
MAX_FIELD = 255
# What a file's name says it is, when the browser's part type is vague (it often is).
EXTENSIONS = {
    ".csv": "text/csv",
    ".tsv": "text/csv",
    ".txt": "text/csv",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
}
DONE = {
    "created": "The submission was received and stored.",
    "replayed": "This form was already sent: the submission it stored is shown (nothing new "
    "was stored).",
    "withdrawn": "The withdrawal was recorded.",
    "cancelled": "The scheduled withdrawal is cancelled: the submission stays in use under the "
    "agreement's terms.",
}


def _redirect(path: str, **params: Any) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    response = RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


def _count_write(request: Request, ctx: RequestContext) -> None:
    """A form that changes something counts against the write limit, as the API route does."""
    assert ctx.principal is not None
    st = state(request)
    st.limiter.hit(st.limiter.write_limit, "write", ctx.principal.client_id)


def _text(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, UploadFile):
        if isinstance(value, UploadFile):
            raise InvalidInput(f"{name} must be text.")
        return None
    text = str(value).strip()
    if len(text) > MAX_FIELD:
        raise InvalidInput(f"{name} is too long.")
    return text or None


def file_type(upload: UploadFile) -> tuple[str | None, str | None]:
    """The Content-Type and Content-Encoding the API would be sent for this file: from its
    name's extension (``.csv``, ``.ndjson``, ``.json``, ``.xlsx``, ``.ods``, each optionally
    ``.gz``), else what the browser said the part is."""
    name = (upload.filename or "").lower()
    encoding = None
    if name.endswith(".gz"):
        encoding, name = "gzip", name[:-3]
    for ext, media in EXTENSIONS.items():
        if name.endswith(ext):
            return media, encoding
    part = (upload.content_type or "").split(";")[0].strip().lower()
    if part in ("application/gzip", "application/x-gzip"):
        return None, "gzip"
    return part or None, encoding


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(intake.CHUNK):
        yield chunk


def _upload_refused(
    request: Request, exc: DomainError, status: int, headers: dict[str, str]
) -> Response:
    """A refused upload: the validation report row by row (row, field, rule; never a value) as
    the API's problem document has it, or the refusal's page."""
    if not isinstance(exc, SubmissionRejected):
        return error_page(request, exc, status, headers)
    response = page(
        request,
        "console/staff/refused.html",
        status,
        title="The file was refused",
        section="console_staff_datasets",
        section_title="Datasets you send",
        dataset=request.path_params.get("dataset", ""),
        detail=exc.detail,
        report=exc.extra["report"],
    )
    response.headers.update(headers)
    return response


@router.get(
    "/console/datasets",
    name="console_staff_datasets",
    dependencies=[Depends(audited(AuditAction.DATASET_LIST, "dataset"))],
)
def dataset_list(request: Request, session: UnitOfWork, ctx: Writer, policy: Policy) -> Response:
    items = datasets.list_datasets(session, ctx, policy)
    return page(
        request,
        "console/staff/datasets.html",
        title="Datasets you send",
        section="console_staff_datasets",
        items=items,
    )


@router.get(
    "/console/datasets/{dataset}",
    name="console_staff_dataset",
    dependencies=[Depends(audited(AuditAction.DATASET_READ, "dataset", "dataset"))],
)
def dataset_page(
    dataset: str, request: Request, session: UnitOfWork, ctx: Writer, policy: Policy
) -> Response:
    if len(dataset) > 64:
        raise InvalidInput("A dataset name is at most 64 characters.")
    shown = datasets.get_dataset(session, ctx, policy, dataset)
    return page(
        request,
        "console/staff/dataset.html",
        title=shown.get("title") or shown["name"],
        section="console_staff_datasets",
        section_title="Datasets you send",
        dataset=shown,
        # One key per form shown: a form sent twice stores one submission (Idempotency-Key).
        idempotency_key=secrets.token_urlsafe(24),
    )


@router.get(
    "/console/datasets/{dataset}/template",
    name="console_staff_template",
    dependencies=[Depends(audited(AuditAction.DATASET_READ, "dataset", "dataset"))],
)
def template(
    dataset: str, request: Request, session: UnitOfWork, ctx: Writer, policy: Policy
) -> Response:
    if len(dataset) > 64:
        raise InvalidInput("A dataset name is at most 64 characters.")
    body = datasets.template(session, ctx, policy, dataset)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{dataset}-template.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.post(
    "/console/datasets/{dataset}/upload",
    name="console_staff_upload",
    dependencies=[Depends(audited(AuditAction.SUBMISSION_CREATE, "dataset", "dataset"))],
)
async def upload(
    dataset: str, request: Request, session: UnitOfWork, ctx: Writer, policy: Policy
) -> Response:
    request.state.error_page = _upload_refused
    async with request.form(max_files=1, max_fields=8) as form:
        check_csrf(request, _text(form.get("csrf"), "csrf"))
        _count_write(request, ctx)
        if len(dataset) > 64:
            raise InvalidInput("A dataset name is at most 64 characters.")
        file = form.get("file")
        if not isinstance(file, UploadFile) or not file.filename:
            raise InvalidInput("Choose the file to send.")
        content_type, content_encoding = file_type(file)
        receipt, replayed = await submissions_api.submit(
            dataset,
            request,
            session,
            ctx,
            policy,
            submissions_api.Upload(_chunks(file), content_type, content_encoding),
            idempotency_key=_text(form.get("idempotency_key"), "idempotency_key"),
            period=_text(form.get("period"), "period"),
            replaces=_text(form.get("replaces"), "replaces"),
            sheet=_text(form.get("sheet"), "sheet"),
        )
    return _redirect(
        request.url_for("console_staff_submission", submission_id=receipt.submission_id).path,
        done="replayed" if replayed else "created",
    )


@router.get(
    "/console/submissions",
    name="console_staff_submissions",
    dependencies=[Depends(audited(AuditAction.SUBMISSION_LIST, "submission"))],
)
def submission_list(
    request: Request, session: UnitOfWork, ctx: Reader, after: str | None = None
) -> Response:
    if after is not None and len(after) > 64:
        raise InvalidInput("after must be a submission id.")
    receipts = service.list_own(session, ctx, dataset=None, limit=PAGE_SIZE, after=after)
    items = [service.summary(r) for r in receipts]
    return page(
        request,
        "console/staff/submissions.html",
        title="Your organization's submissions",
        section="console_staff_submissions",
        items=items,
        next_after=items[-1]["id"] if len(items) == PAGE_SIZE else None,
    )


@router.get(
    "/console/submissions/{submission_id}",
    name="console_staff_submission",
    dependencies=[Depends(audited(AuditAction.SUBMISSION_READ, "submission", "submission_id"))],
)
def submission_page(
    submission_id: str,
    request: Request,
    session: UnitOfWork,
    ctx: Reader,
    done: str | None = None,
) -> Response:
    if len(submission_id) > 64:
        raise InvalidInput("A submission id is at most 64 characters.")
    receipt = service.summary(service.get(session, ctx, submission_id))
    assert ctx.principal is not None
    return page(
        request,
        "console/staff/submission.html",
        title=f"Submission {receipt['id']}",
        section="console_staff_submissions",
        section_title="Your organization's submissions",
        receipt=receipt,
        done=DONE.get(done or ""),
        can_withdraw="records:write" in ctx.principal.scopes
        and receipt["status"] == "accepted"
        and receipt["withdrawal"] is None,
        can_cancel="records:write" in ctx.principal.scopes
        and receipt["withdrawal"] is not None
        and receipt["withdrawal"]["state"] == "scheduled",
    )


@router.get(
    "/console/proofs/inclusion",
    name="console_staff_proof",
    dependencies=[Depends(audited(AuditAction.AUDIT_PROOF_INCLUSION, "audit_event"))],
)
def proof(request: Request, session: UnitOfWork, ctx: Reader, index: str = "") -> Response:
    """The inclusion proof of one of the organization's events, as ``GET
    /v1/audit/proofs/inclusion?index=N`` gives it, as a download."""
    if not index.isdigit() or len(index) > 12:
        raise InvalidInput("index must be an event's index.")
    body = inclusion_proof(request, session, ctx, index=int(index))
    return JSONResponse(
        body,
        headers={
            "Content-Disposition": f'attachment; filename="proof-{int(index)}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/console/submissions/{submission_id}/withdraw",
    name="console_staff_withdraw_confirm",
    dependencies=[Depends(audited(AuditAction.SUBMISSION_READ, "submission", "submission_id"))],
)
def withdraw_confirm(
    submission_id: str, request: Request, session: UnitOfWork, ctx: Writer
) -> Response:
    if len(submission_id) > 64:
        raise InvalidInput("A submission id is at most 64 characters.")
    receipt = service.summary(service.get(session, ctx, submission_id))
    terms = service.own_withdrawal_terms(session, ctx, submission_id)
    return page(
        request,
        "console/staff/withdraw.html",
        title=f"Withdraw submission {receipt['id']}?",
        section="console_staff_submissions",
        section_title="Your organization's submissions",
        receipt=receipt,
        terms=terms,
    )


@router.post(
    "/console/submissions/{submission_id}/withdraw",
    name="console_staff_withdraw",
    dependencies=[Depends(audited(AuditAction.SUBMISSION_WITHDRAW, "submission", "submission_id"))],
)
def withdraw(
    submission_id: str,
    request: Request,
    session: UnitOfWork,
    ctx: Writer,
    csrf: Annotated[str | None, Form(max_length=MAX_FIELD)] = None,
) -> Response:
    check_csrf(request, csrf)
    _count_write(request, ctx)
    if len(submission_id) > 64:
        raise InvalidInput("A submission id is at most 64 characters.")
    receipt = service.withdraw(session, ctx, submission_id)
    return _redirect(
        request.url_for("console_staff_submission", submission_id=receipt.submission_id).path,
        done="withdrawn",
    )


@router.get(
    "/console/submissions/{submission_id}/withdrawal/cancel",
    name="console_staff_cancel_withdrawal_confirm",
    dependencies=[Depends(audited(AuditAction.SUBMISSION_READ, "submission", "submission_id"))],
)
def cancel_withdrawal_confirm(
    submission_id: str, request: Request, session: UnitOfWork, ctx: Writer
) -> Response:
    if len(submission_id) > 64:
        raise InvalidInput("A submission id is at most 64 characters.")
    receipt = service.summary(service.get(session, ctx, submission_id))
    terms = service.own_withdrawal_terms(session, ctx, submission_id)
    back = request.url_for("console_staff_submission", submission_id=receipt["id"]).path
    scheduled = receipt["withdrawal"]
    if scheduled is None or scheduled["state"] != "scheduled":
        raise Conflict("No withdrawal of this submission is scheduled.")
    return confirm_page(
        request,
        title=f"Cancel the withdrawal of submission {receipt['id']}?",
        facts=[
            ("Dataset", receipt["dataset"]),
            ("Rows", str(receipt["row_count"])),
            ("Withdrawal requested (UTC)", scheduled["requested_at"]),
            ("Takes effect (UTC)", scheduled["effective_at"]),
        ],
        explanation=[
            f"Agreement {terms.agreement_id} version {terms.version} governs this submission. "
            f"It allows withdrawal with {terms.notice_days} days' notice "
            f"(withdrawal.notice_days: {terms.notice_days}): the submission stays in use until "
            "the notice has run, then leaves every computation, and its records are destroyed "
            "after the agreement's grace period.",
            "Cancelling keeps the submission in use as if the withdrawal had never been asked "
            "for. To withdraw it later, ask again: the notice then starts over.",
        ],
        action_url=request.url_for(
            "console_staff_cancel_withdrawal", submission_id=receipt["id"]
        ).path,
        button="Cancel the withdrawal",
        back_url=back,
        back_text="Keep the withdrawal scheduled and go back",
        section="console_staff_submissions",
        section_title="Your organization's submissions",
    )


@router.post(
    "/console/submissions/{submission_id}/withdrawal/cancel",
    name="console_staff_cancel_withdrawal",
    dependencies=[
        Depends(audited(AuditAction.SUBMISSION_WITHDRAWAL_CANCEL, "submission", "submission_id"))
    ],
)
def cancel_withdrawal(
    submission_id: str,
    request: Request,
    session: UnitOfWork,
    ctx: Writer,
    csrf: Annotated[str | None, Form(max_length=MAX_FIELD)] = None,
) -> Response:
    check_csrf(request, csrf)
    _count_write(request, ctx)
    if len(submission_id) > 64:
        raise InvalidInput("A submission id is at most 64 characters.")
    # DELETE /v1/submissions/{id}/withdrawal itself.
    receipt = submissions_api.cancel_withdrawal(submission_id, session, ctx)
    return _redirect(
        request.url_for("console_staff_submission", submission_id=receipt["id"]).path,
        done="cancelled",
    )
