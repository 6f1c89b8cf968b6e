"""The console: signing in and out, the person's home, and the auditor's pages.

Routes are thin, like the API's: the auditor's pages call the services of
:mod:`api.routers.audit` (:mod:`audit.queries`, :mod:`audit.export`) with the signed-in person's
request context, under the same audited actions, so a page reads nothing an API call by that
person could not, and leaves the same audit event, naming the person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from api.console import account, auth, sso
from api.console.auth import check_csrf, local_path, session_id, signed_in
from api.console.pages import error_page, page
from api.deps import UnitOfWork, anonymous_context, audited, state
from api.pages import content
from api.ratelimit import source_address
from audit import export, queries
from audit.actions import AuditAction
from audit.canonical import b64
from audit.checkpoints import as_json
from audit.note import LogSigner, origin_for, signer_for
from audit.service import OUTCOMES
from core.context import RequestContext
from core.errors import InvalidInput
from identity import people
from identity.errors import SignInFailed

router = APIRouter(include_in_schema=False)
Person = Annotated[RequestContext, Depends(signed_in())]
Auditor = Annotated[RequestContext, Depends(signed_in(queries.AUDITOR_SCOPE))]
PAGE_SIZE = 50
MAX_FIELD = 256
SIGN_IN_FAILED = "Wrong username, password or code."
PUBLIC_KEY_PATH = "/v1/audit/public-key?format=vkey"
PUBLIC_KEY_FILE = "backbone-audit.vkey"


@dataclass(frozen=True)
class Section:
    """A part of the console, linked from the home page for people whose role has ``scope``."""

    scope: str
    route: str
    title: str
    summary: str


# The consoles of other roles add their sections here; the home page shows a person only those
# their role's scopes reach.
SECTIONS: tuple[Section, ...] = (
    Section(
        queries.AUDITOR_SCOPE,
        "console_audit_log",
        "The access log",
        "Every request that touched data, agreements, keys or the log, filtered and paged.",
    ),
    Section(
        queries.AUDITOR_SCOPE,
        "console_audit_checkpoint",
        "Checkpoint and export",
        "The latest signed checkpoint, an export up to it and how to verify it offline.",
    ),
    Section(
        queries.AUDITOR_SCOPE,
        "console_audit_proof",
        "Inclusion proofs",
        "The proof that an event is in the log the checkpoint signed.",
    ),
    Section(
        "indicators:write",
        "console_indicators",
        "Indicators",
        "Indicators and their releases; request a release with its budget preview and follow it.",
    ),
    Section(
        "indicators:write",
        "console_define",
        "Define an indicator",
        "A definition checked against the agreements before it is saved.",
    ),
    Section(
        "indicators:write",
        "console_publication",
        "Publication",
        "Every release and where it stands: published, awaiting its providers' review, held or "
        "objected; publish what is due.",
    ),
    Section(
        "indicators:read",
        "console_results",
        "Results and stories",
        "The initiative's results and the stories behind their curves.",
    ),
    Section(
        "agreements:approve",
        "console_dm_agreements",
        "Your agreements",
        "Read each version in plain language, compare versions, approve the exact content hash.",
    ),
    Section(
        "agreements:approve",
        "console_dm_reviews",
        "Releases to review",
        "What a release computed from your data would publish; approve it or object.",
    ),
    Section(
        "agreements:approve",
        "console_dm_budgets",
        "Privacy budgets",
        "The privacy loss spent and left under your agreements.",
    ),
    Section(
        "agreements:approve",
        "console_dm_webhooks",
        "Webhooks",
        "Where your systems are told of what happens; each webhook's deliveries, and replay.",
    ),
    Section(
        "agreements:approve",
        "console_dm_what_if",
        "What if…",
        "Ask the policy engine what it would decide, with its reasons, without doing anything.",
    ),
    Section(
        "admin",
        "console_admin_organizations",
        "Organizations",
        "The organizations and a form to add one.",
    ),
    Section(
        "admin",
        "console_admin_clients",
        "Clients",
        "Create a client, rotate its secret or disable it.",
    ),
    Section(
        "admin",
        "console_admin_signing_key",
        "Token signing key",
        "The key that signs access tokens, and its rotation.",
    ),
    Section(
        "admin",
        "console_admin_people",
        "People",
        "Create a person who signs in here, or disable one.",
    ),
    Section(
        "records:write",
        "console_staff_datasets",
        "Datasets you send",
        "Each dataset's fields and template, and the form that sends a file.",
    ),
    Section(
        "records:write",
        "console_staff_submissions",
        "Your organization's submissions",
        "Receipts of what your organization sent, and withdrawal under the agreement's terms.",
    ),
)


def _signer(request: Request) -> LogSigner:
    st = state(request)
    return signer_for(st.master, origin_for(st.settings.issuer))


def _text(value: str | None) -> str | None:
    """A form field: None when left empty."""
    value = (value or "").strip()
    return value[:MAX_FIELD] or None


def _time(value: str | None, name: str) -> datetime | None:
    """A time from a form: RFC 3339, or a browser's ``datetime-local`` read as UTC."""
    text = _text(value)
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name} must be a date and time (for example 2026-12-01T09:00)."
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _number(value: str | None, name: str) -> int | None:
    text = _text(value)
    if text is None:
        return None
    if not text.isdigit() or len(text) > 15:
        raise InvalidInput(f"{name} must be a whole number.")
    return int(text)


def _sign_in_form(
    request: Request, status: int = 200, *, error: str | None = None, next_path: str = ""
) -> Response:
    return page(
        request,
        "console/sign_in.html",
        status,
        title="Sign in",
        error=error,
        next_path=local_path(next_path),
        sso_organizations=sso.sign_in_choices(request),
    )


@router.get("/sign-in", name="sign_in_page")
def sign_in_page(request: Request, session: UnitOfWork, next: str | None = None) -> Response:
    request.state.initiative = content.initiative_name(session)
    return _sign_in_form(request, next_path=next or "")


@router.post("/sign-in", name="sign_in")
def sign_in(
    request: Request,
    session: UnitOfWork,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Username, password and TOTP code in one form, or without the code the first of two steps
    (:mod:`api.console.account`). Failures count per source address (over
    the limit, that address is refused before anything is checked) and per username (over it, a
    *failed* attempt is answered 429): a stranger cannot lock the real person out, whose right
    password and code still work from their own address."""
    st = state(request)
    request.state.error_page = error_page
    request.state.initiative = content.initiative_name(session)
    limiter = st.limiter
    address = source_address(request)
    retry = limiter.exhausted(limiter.failure_limit, "signin-fail-addr", address)
    if retry is not None:
        return _too_many(request, retry, next)
    username = username.strip().lower()[:64]
    ctx = anonymous_context(request)
    two_steps = not code.strip()
    try:
        if two_steps:
            person = people.check_password(session, username, password[:1024])
        else:
            person = people.authenticate(
                session, ctx, st.master, username, password[:1024], code[:MAX_FIELD]
            )
    except SignInFailed:
        limiter.take(limiter.failure_limit, "signin-fail-addr", address)
        if username:
            retry = limiter.take(limiter.failure_limit, "signin-fail-user", username)
            if retry is not None:
                return _too_many(request, retry, next)
        return _sign_in_form(request, 401, error=SIGN_IN_FAILED, next_path=next)
    if two_steps:
        # No code: the second factor (a passkey, or the code) comes on a page of its own.
        return account.to_second_factor(request, session, person, next)
    started = people.start_session(
        session,
        ctx,
        person,
        idle=auth.idle_timeout(st.settings),
        absolute=auth.absolute_timeout(st.settings),
    )
    response = RedirectResponse(local_path(next), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    auth.set_session_cookie(response, st.settings, started.token)
    return response


def _too_many(request: Request, retry: int, next_path: str) -> Response:
    response = _sign_in_form(
        request,
        429,
        error=f"Too many failed sign-ins; try again in {retry} second(s).",
        next_path=next_path,
    )
    response.headers["Retry-After"] = str(retry)
    return response


@router.post("/sign-out", name="sign_out")
def sign_out(
    request: Request,
    session: UnitOfWork,
    ctx: Person,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    people.end_session(session, ctx, session_id(request))
    response = RedirectResponse("/sign-in", status_code=303)
    response.headers["Cache-Control"] = "no-store"
    auth.clear_session_cookie(response, state(request).settings)
    return response


@router.get("/console", name="console_home")
def console_home(request: Request, ctx: Person) -> Response:
    assert ctx.principal is not None
    sections = [s for s in SECTIONS if s.scope in ctx.principal.scopes]
    return page(request, "console/home.html", title="Console", sections=sections)


def _query(**params: Any) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


@router.get(
    "/console/audit",
    name="console_audit_log",
    dependencies=[Depends(audited(AuditAction.AUDIT_READ, "audit_log"))],
)
def audit_log(
    request: Request,
    session: UnitOfWork,
    ctx: Auditor,
    since: str | None = None,
    until: str | None = None,
    organization: str | None = None,
    action: str | None = None,
    decision: str | None = None,
    outcome: str | None = None,
    after: str | None = None,
) -> Response:
    form = {
        "since": _text(since),
        "until": _text(until),
        "organization": _text(organization),
        "action": _text(action),
        "decision": _text(decision),
        "outcome": _text(outcome),
    }
    if form["outcome"] is not None and form["outcome"] not in OUTCOMES:
        raise InvalidInput(f"outcome must be one of {', '.join(OUTCOMES)}.")
    filters = queries.EventFilter(
        since=_time(since, "since"),
        until=_time(until, "until"),
        organization=form["organization"],
        action=form["action"],
        decision=form["decision"],
        outcome=form["outcome"],
    )
    start = _number(after, "after")
    items = queries.list_events(session, ctx, filters, after=start, limit=PAGE_SIZE)
    next_query = _query(**form, after=items[-1]["index"]) if len(items) == PAGE_SIZE else None
    return page(
        request,
        "console/audit_log.html",
        title="The access log",
        section="console_audit_log",
        form=form,
        items=items,
        after=start,
        next_query=next_query,
        first_query=_query(**form) if start is not None else None,
        actions=sorted(a.value for a in AuditAction),
        outcomes=OUTCOMES,
    )


@router.get(
    "/console/audit/checkpoint",
    name="console_audit_checkpoint",
    dependencies=[Depends(audited(AuditAction.AUDIT_CHECKPOINT_READ, "audit_checkpoint"))],
)
def audit_checkpoint(request: Request, session: UnitOfWork, ctx: Auditor) -> Response:
    signer = _signer(request)
    row = queries.latest_checkpoint(session, ctx, signer)
    size = row.tree_size
    return page(
        request,
        "console/audit_checkpoint.html",
        title="Checkpoint and export",
        section="console_audit_checkpoint",
        checkpoint=as_json(row, signer.origin),
        signature=b64(row.signature),
        export_file=f"audit-{size}.ndjson",
        checkpoint_file=f"audit-{size}.checkpoint",
        key_file=PUBLIC_KEY_FILE,
        key_path=PUBLIC_KEY_PATH,
        command=(
            f"backbone audit verify audit-{size}.ndjson "
            f"--checkpoint audit-{size}.checkpoint --public-key {PUBLIC_KEY_FILE}"
        ),
    )


@router.get(
    "/console/audit/checkpoints/{tree_size}",
    name="console_audit_checkpoint_note",
    dependencies=[
        Depends(audited(AuditAction.AUDIT_CHECKPOINT_READ, "audit_checkpoint", "tree_size"))
    ],
)
def audit_checkpoint_note(
    request: Request, session: UnitOfWork, ctx: Auditor, tree_size: str
) -> Response:
    size = _number(tree_size, "tree_size")
    assert size is not None
    row = queries.checkpoint_at(session, ctx, size)
    return PlainTextResponse(
        row.note,
        headers={
            "Content-Disposition": f'attachment; filename="audit-{size}.checkpoint"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/console/audit/export",
    name="console_audit_export",
    dependencies=[Depends(audited(AuditAction.AUDIT_EXPORT, "audit_log"))],
)
def audit_export(
    request: Request, session: UnitOfWork, ctx: Auditor, tree_size: str | None = None
) -> Response:
    plan = export.plan(
        session,
        ctx,
        _signer(request),
        fmt="ndjson",
        tree_size=_number(tree_size, "tree_size"),
        filters=queries.EventFilter(),
    )
    return StreamingResponse(
        export.stream(state(request).sessions, plan),
        media_type=plan.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{plan.filename}"',
            "Audit-Tree-Size": str(plan.tree_size),
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/console/audit/proof",
    name="console_audit_proof",
    dependencies=[Depends(audited(AuditAction.AUDIT_PROOF_INCLUSION, "audit_event"))],
)
def audit_proof(
    request: Request,
    session: UnitOfWork,
    ctx: Auditor,
    index: str | None = None,
    format: str | None = None,
) -> Response:
    wanted = _number(index, "index")
    proof = None
    if wanted is not None:
        proof = queries.inclusion_proof(
            session, ctx, _signer(request), index=wanted, tree_size=None
        )
        if format == "json":
            return JSONResponse(
                proof,
                headers={
                    "Content-Disposition": f'attachment; filename="proof-{wanted}.json"',
                    "Cache-Control": "no-store",
                },
            )
    return page(
        request,
        "console/audit_proof.html",
        title="Inclusion proofs",
        section="console_audit_proof",
        index=wanted,
        proof=proof,
        key_file=PUBLIC_KEY_FILE,
        key_path=PUBLIC_KEY_PATH,
    )
