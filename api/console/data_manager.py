"""The data managers' console: their organization's agreements in plain language, the difference
between two versions, approval of an exact content hash, suspension and termination, the
releases awaiting their organization's review, and their privacy budgets.

Every page calls what the JSON route of :mod:`api.routers.agreements`,
:mod:`api.routers.reviews` or :mod:`api.routers.budgets` calls (the route function itself where
it is a plain function of the session and the request context), with the signed-in person's
request context holding the scopes that route requires, under the same audited action: a page
reads or changes nothing an API call by that person could not, and the audit log names the
person.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from aggregation import review
from agreements import codelist_service, service
from agreements.document import AgreementDocument
from agreements.lint import lint
from api.console.agreement_text import canonical_yaml, diff_rows, plain_language
from api.console.auth import check_csrf, signed_in
from api.console.pages import page
from api.deps import Policy, UnitOfWork, audited, state
from api.routers import agreements as agreements_api
from api.routers import budgets as budgets_api
from api.schemas import MAX_VERSION, ApprovalIn
from audit.actions import AuditAction
from core.context import RequestContext
from core.errors import InvalidInput
from policy.review import APPROVE, OBJECT

router = APIRouter(include_in_schema=False)
# The scopes of the API routes each page stands for.
Reader = Annotated[RequestContext, Depends(signed_in("agreements:read"))]
Approver = Annotated[RequestContext, Depends(signed_in("agreements:approve"))]
READ_SCOPE = "agreements:read"
APPROVE_SCOPE = "agreements:approve"
STATUS_ACTIONS = ("suspend", "resume")
DONE = {
    "approved": "Your organization's approval of this version is recorded.",
    "suspend": "The agreement is suspended from the next request on.",
    "resume": "The agreement is in force again from the next request on.",
    "terminate": "The agreement is terminated.",
    "approve": "Your organization approved the release.",
    "object": "Your organization objected to the release: it will not be published.",
}
MAX_REASON = 2000


def _version(value: str | None, name: str = "version") -> int | None:
    text = (value or "").strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 6 or not 1 <= int(text) <= MAX_VERSION:
        raise InvalidInput(f"{name} must be a version number.")
    return int(text)


def _count_write(request: Request, ctx: RequestContext) -> None:
    """A form that changes something counts against the write limit, as the API route does."""
    assert ctx.principal is not None
    st = state(request)
    st.limiter.hit(st.limiter.write_limit, "write", ctx.principal.client_id)


def _done(value: str | None) -> str | None:
    return DONE.get(value or "")


def _redirect(path: str, **params: Any) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    response = RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get(
    "/console/agreements",
    name="console_dm_agreements",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_READ, "agreement"))],
)
def agreements(request: Request, session: UnitOfWork, ctx: Reader) -> Response:
    # The route's own function: it audits the listing, naming the person.
    items = agreements_api.list_agreements(session, ctx)
    return page(
        request,
        "console/dm/agreements.html",
        title="Your agreements",
        section="console_dm_agreements",
        items=items,
    )


def _can_approve(ctx: RequestContext, shown: dict[str, Any], parties: list[str]) -> bool:
    assert ctx.principal is not None
    org = ctx.principal.organization_id
    return (
        APPROVE_SCOPE in ctx.principal.scopes
        and shown["status"] in ("draft", "proposed")
        and org in parties
        and org not in shown["approved_by"]
    )


@router.get(
    "/console/agreements/{agreement_id}",
    name="console_dm_agreement",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_READ, "agreement", "agreement_id"))],
)
def agreement(
    request: Request,
    agreement_id: str,
    session: UnitOfWork,
    ctx: Reader,
    policy: Policy,
    version: str | None = None,
    done: str | None = None,
) -> Response:
    assert ctx.principal is not None
    whole = agreements_api.get_agreement(agreement_id, session, ctx, policy)
    wanted = _version(version) or max(v["version"] for v in whole["versions"])
    shown = agreements_api.get_version(agreement_id, wanted, session, ctx, policy)
    document = AgreementDocument.model_validate(shown["document"])
    catalog = codelist_service.catalog_for(session, document)
    findings = [
        f.as_dict()
        for f in lint(document, k_floor=state(request).settings.k_floor, codelists=catalog)
    ]
    parties = sorted(document.party_ids)
    org = ctx.principal.organization_id
    live = next((v for v in whole["versions"] if v["status"] in ("active", "suspended")), None)
    may_change = APPROVE_SCOPE in ctx.principal.scopes and org in parties
    return page(
        request,
        "console/dm/agreement.html",
        title=whole["title"],
        section="console_dm_agreements",
        section_title="Your agreements",
        agreement=whole,
        shown=shown,
        document=document,
        sections=plain_language(document, catalog.resolved),
        findings=findings,
        can_approve=_can_approve(ctx, shown, parties),
        live=live if may_change else None,
        done=_done(done),
    )


@router.get(
    "/console/agreements/{agreement_id}/odrl",
    name="console_dm_odrl",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_READ, "agreement", "agreement_id"))],
)
def odrl(
    agreement_id: str,
    session: UnitOfWork,
    ctx: Reader,
    policy: Policy,
    version: str | None = None,
) -> Response:
    wanted = _version(version)
    answer: JSONResponse = agreements_api.get_odrl(agreement_id, session, ctx, policy, wanted)
    body = json.loads(bytes(answer.body))
    number = body.get("version", wanted) if isinstance(body, dict) else wanted
    name = f"{agreement_id}-v{number}.odrl.jsonld" if number else f"{agreement_id}.odrl.jsonld"
    answer.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    answer.headers["Cache-Control"] = "no-store"
    return answer


@router.get(
    "/console/agreements/{agreement_id}/diff",
    name="console_dm_diff",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_READ, "agreement", "agreement_id"))],
)
def diff(
    request: Request,
    agreement_id: str,
    session: UnitOfWork,
    ctx: Reader,
    policy: Policy,
    old: str | None = None,
    new: str | None = None,
) -> Response:
    whole = agreements_api.get_agreement(agreement_id, session, ctx, policy)
    numbers = [v["version"] for v in whole["versions"]]
    to = _version(new, "new") or max(numbers)
    before = _version(old, "old") or max([n for n in numbers if n < to] or [to])
    a = agreements_api.get_version(agreement_id, before, session, ctx, policy)
    b = agreements_api.get_version(agreement_id, to, session, ctx, policy)
    rows = diff_rows(canonical_yaml(a["document"]), canonical_yaml(b["document"]))
    return page(
        request,
        "console/dm/diff.html",
        title=f"{whole['title']}: versions {before} and {to}",
        section="console_dm_agreements",
        section_title="Your agreements",
        agreement=whole,
        old=a,
        new=b,
        rows=rows,
        added=sum(1 for r in rows if r.kind == "added"),
        removed=sum(1 for r in rows if r.kind == "removed"),
    )


@router.post(
    "/console/agreements/{agreement_id}/approve",
    name="console_dm_approve",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_APPROVE, "agreement", "agreement_id"))],
)
def approve(
    request: Request,
    agreement_id: str,
    session: UnitOfWork,
    ctx: Approver,
    csrf: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
    content_hash: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    _count_write(request, ctx)
    try:
        body = ApprovalIn(version=_version(version) or 0, content_hash=content_hash.strip()[:200])
    except ValidationError:
        raise InvalidInput("Approve a version by its number and content hash.") from None
    out = agreements_api.approve(agreement_id, body, session, ctx)
    return _redirect(
        request.url_for("console_dm_agreement", agreement_id=agreement_id).path,
        version=out["version"],
        done="approved",
    )


def _change_status(
    request: Request,
    session: Any,
    ctx: RequestContext,
    agreement_id: str,
    action: str,
    reason: str,
) -> Response:
    row = service.change_status(session, ctx, agreement_id, action, reason.strip()[:500] or None)
    return _redirect(
        request.url_for("console_dm_agreement", agreement_id=agreement_id).path,
        version=row.version,
        done=action,
    )


def _status_route(action: str):  # type: ignore[no-untyped-def]
    def route(
        request: Request,
        agreement_id: str,
        session: UnitOfWork,
        ctx: Approver,
        csrf: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
    ) -> Response:
        check_csrf(request, csrf)
        _count_write(request, ctx)
        return _change_status(request, session, ctx, agreement_id, action, reason)

    return route


for _action in STATUS_ACTIONS:
    router.add_api_route(
        f"/console/agreements/{{agreement_id}}/{_action}",
        _status_route(_action),
        methods=["POST"],
        name=f"console_dm_{_action}",
        dependencies=[
            Depends(audited(AuditAction(f"agreement.{_action}"), "agreement", "agreement_id"))
        ],
    )


@router.get(
    "/console/agreements/{agreement_id}/terminate",
    name="console_dm_terminate_confirm",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_READ, "agreement", "agreement_id"))],
)
def terminate_confirm(
    request: Request, agreement_id: str, session: UnitOfWork, ctx: Approver, policy: Policy
) -> Response:
    whole = agreements_api.get_agreement(agreement_id, session, ctx, policy)
    live = next((v for v in whole["versions"] if v["status"] in ("active", "suspended")), None)
    return page(
        request,
        "console/dm/terminate.html",
        title=f"Terminate {whole['title']}?",
        section="console_dm_agreements",
        section_title="Your agreements",
        agreement=whole,
        live=live,
    )


@router.post(
    "/console/agreements/{agreement_id}/terminate",
    name="console_dm_terminate",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_TERMINATE, "agreement", "agreement_id"))],
)
def terminate(
    request: Request,
    agreement_id: str,
    session: UnitOfWork,
    ctx: Approver,
    csrf: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    if confirm != "terminate":
        raise InvalidInput("Tick the box to confirm that the agreement ends now, for every party.")
    _count_write(request, ctx)
    return _change_status(request, session, ctx, agreement_id, "terminate", reason)


ReviewState = Literal["pending", "decided", "all"]


@router.get(
    "/console/reviews",
    name="console_dm_reviews",
    dependencies=[Depends(audited(AuditAction.RELEASE_REVIEW_LIST, "release_review"))],
)
def reviews(
    request: Request, session: UnitOfWork, ctx: Approver, state: str | None = None
) -> Response:
    wanted: ReviewState = "pending"
    if state in ("decided", "all"):
        wanted = "decided" if state == "decided" else "all"
    elif state not in (None, "", "pending"):
        raise InvalidInput("state must be pending, decided or all.")
    items = review.awaiting(session, ctx, wanted)
    return page(
        request,
        "console/dm/reviews.html",
        title="Releases to review",
        section="console_dm_reviews",
        items=items,
        state=wanted,
    )


@router.get(
    "/console/reviews/{release_id}",
    name="console_dm_review",
    dependencies=[Depends(audited(AuditAction.RELEASE_REVIEW_READ, "release", "release_id"))],
)
def review_page(
    request: Request,
    release_id: str,
    session: UnitOfWork,
    ctx: Approver,
    done: str | None = None,
) -> Response:
    assert ctx.principal is not None
    document = review.review_document(session, ctx, release_id)
    org = ctx.principal.organization_id
    mine = next((r for r in document["review"]["reviewers"] if r["organization"] == org), None)
    open_ = document["review"]["state"] == "pending_review" and mine and mine["decision"] is None
    return page(
        request,
        "console/dm/review.html",
        title=f"Release {release_id} of {document['indicator']}",
        section="console_dm_reviews",
        section_title="Releases to review",
        release=document,
        mine=mine,
        open=bool(open_),
        done=_done(done),
    )


def _decide(
    request: Request,
    session: Any,
    ctx: RequestContext,
    release_id: str,
    decision: str,
    csrf: str,
    reason: str,
) -> Response:
    check_csrf(request, csrf)
    _count_write(request, ctx)
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"A reason has at most {MAX_REASON} characters.")
    review.decide(session, ctx, release_id, decision, reason or None)
    return _redirect(
        request.url_for("console_dm_review", release_id=release_id).path, done=decision
    )


@router.post(
    "/console/reviews/{release_id}/approve",
    name="console_dm_review_approve",
    dependencies=[Depends(audited(AuditAction.RELEASE_REVIEW_APPROVE, "release", "release_id"))],
)
def review_approve(
    request: Request,
    release_id: str,
    session: UnitOfWork,
    ctx: Approver,
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    return _decide(request, session, ctx, release_id, APPROVE, csrf, reason)


@router.post(
    "/console/reviews/{release_id}/object",
    name="console_dm_review_object",
    dependencies=[Depends(audited(AuditAction.RELEASE_REVIEW_OBJECT, "release", "release_id"))],
)
def review_object(
    request: Request,
    release_id: str,
    session: UnitOfWork,
    ctx: Approver,
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    return _decide(request, session, ctx, release_id, OBJECT, csrf, reason)


@router.get(
    "/console/budgets",
    name="console_dm_budgets",
    dependencies=[Depends(audited(AuditAction.AGREEMENT_READ, "privacy_budget"))],
)
def budgets(request: Request, session: UnitOfWork, ctx: Reader) -> Response:
    # The route's own function: it audits the listing, naming the person.
    items = budgets_api.list_budgets(session, ctx)
    return page(
        request,
        "console/dm/budgets.html",
        title="Privacy budgets",
        section="console_dm_budgets",
        items=items,
    )


__all__ = ["APPROVE_SCOPE", "READ_SCOPE", "router"]
