"""A person's own account (their passkeys) and the second step of signing in.

Signing in takes two factors: the password, then a TOTP code or a passkey. The sign-in form
(:func:`api.console.routes.sign_in`) still takes all three fields of the TOTP sign-in at once;
when the code is left empty and the password is right, the browser gets a short-lived pending
sign-in (:mod:`identity.pending`, an HttpOnly cookie scoped to ``/sign-in``) and comes here, where
the page offers the person's passkey (with ``static/passkeys.js``) and the TOTP code form (which
needs no JavaScript). No session exists until the second factor passes. Both steps count failures
against the same limits, per source address and per username, as the one-form sign-in does.

Passkeys are added and removed on ``/console/account`` by the person signed in, whatever their
role. The WebAuthn ceremonies (challenge kept on the server, bound to the session or to the
pending sign-in) are :mod:`identity.passkeys`'.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.console import auth
from api.console.auth import check_csrf, local_path, session_id, signed_in
from api.console.pages import error_page, page
from api.deps import UnitOfWork, audited, record_refusal, state
from api.errors import domain_error_response
from api.pages import content
from api.ratelimit import RateLimited, source_address
from audit.actions import AuditAction
from core.context import RequestContext
from core.errors import InvalidInput, NotFound
from identity import passkeys, pending, people
from identity.errors import SignInFailed
from identity.models import Person as PersonRow

router = APIRouter(include_in_schema=False)
Person = Annotated[RequestContext, Depends(signed_in())]
PENDING_COOKIE = "backbone_pending_sign_in"
PENDING_PATH = "/sign-in"
SECOND_FACTOR_FAILED = "Wrong code, or the passkey was refused."
DONE = {
    "added": "The passkey is added: you can sign in with it instead of a code.",
    "removed": "The passkey is removed.",
}


class PasskeyOptionsRequest(BaseModel):
    csrf: str = Field(default="", max_length=128)


class PasskeyAddRequest(BaseModel):
    csrf: str = Field(default="", max_length=128)
    name: str = Field(default="", max_length=200)
    credential: dict[str, Any]


class PasskeySignInRequest(BaseModel):
    credential: dict[str, Any]
    next: str = Field(default="", max_length=2000)


def relying_party(request: Request, session: Session) -> passkeys.RelyingParty:
    """This service as a WebAuthn relying party (its issuer's host and origin)."""
    return passkeys.relying_party(state(request).settings.issuer, content.initiative_name(session))


def _me(session: Session, ctx: RequestContext) -> PersonRow:
    assert ctx.principal is not None
    person = session.get(PersonRow, ctx.principal.client_id.removeprefix(people.PERSON_PREFIX))
    assert person is not None  # signed_in admitted a live session of an enabled person
    return person


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/console/account", name="console_account")
def account(
    request: Request, session: UnitOfWork, ctx: Person, done: str | None = None
) -> Response:
    person = _me(session, ctx)
    return page(
        request,
        "console/account.html",
        title="Your account",
        section="console_account",
        passkeys=passkeys.list_passkeys(session, person.id),
        done=DONE.get(done or ""),
    )


@router.post(
    "/console/account/passkeys/options",
    name="console_passkey_options",
    dependencies=[Depends(audited(AuditAction.PERSON_PASSKEY_ADD, "passkey"))],
)
def passkey_options(
    request: Request, session: UnitOfWork, ctx: Person, body: PasskeyOptionsRequest
) -> Response:
    request.state.error_page = None  # a script asks: it gets problem documents
    check_csrf(request, body.csrf)
    options = passkeys.registration_options(
        session, ctx, relying_party(request, session), _me(session, ctx), session_id(request)
    )
    return _no_store(Response(options, media_type="application/json"))


@router.post(
    "/console/account/passkeys",
    name="console_passkey_add",
    dependencies=[Depends(audited(AuditAction.PERSON_PASSKEY_ADD, "passkey"))],
)
def passkey_add(
    request: Request, session: UnitOfWork, ctx: Person, body: PasskeyAddRequest
) -> Response:
    request.state.error_page = None
    check_csrf(request, body.csrf)
    st = state(request)
    assert ctx.principal is not None
    st.limiter.hit(st.limiter.write_limit, "write", ctx.principal.client_id)
    try:
        passkeys.add_passkey(
            session,
            ctx,
            relying_party(request, session),
            _me(session, ctx),
            session_id(request),
            body.credential,
            body.name,
        )
    except InvalidInput as exc:
        # Answered rather than raised: the challenge it used stays used (the unit of work
        # commits), and the refusal is audited as the unit of work would have.
        record_refusal(request, exc)
        return _no_store(domain_error_response(request, exc))
    location = request.app.url_path_for("console_account") + "?done=added"
    return _no_store(JSONResponse({"location": location}, status_code=201))


@router.get("/console/account/passkeys/{passkey_id}/remove", name="console_passkey_remove_page")
def passkey_remove_page(
    request: Request, session: UnitOfWork, ctx: Person, passkey_id: str
) -> Response:
    person = _me(session, ctx)
    mine = passkeys.list_passkeys(session, person.id)
    found = next((p for p in mine if p.id == passkey_id), None)
    if found is None:
        raise NotFound("You have no passkey with this id.")
    return page(
        request,
        "console/passkey_remove.html",
        title=f"Remove the passkey {found.name}?",
        section="console_account",
        section_title="Your account",
        passkey=found,
        others=len(mine) - 1,
    )


@router.post(
    "/console/account/passkeys/{passkey_id}/remove",
    name="console_passkey_remove",
    dependencies=[Depends(audited(AuditAction.PERSON_PASSKEY_REMOVE, "passkey", "passkey_id"))],
)
def passkey_remove(
    request: Request,
    session: UnitOfWork,
    ctx: Person,
    passkey_id: str,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    person = _me(session, ctx)
    passkeys.remove_passkey(session, ctx, person.id, passkey_id)
    return _no_store(
        RedirectResponse(
            request.app.url_path_for("console_account") + "?done=removed", status_code=303
        )
    )


# The second step of signing in.


def set_pending_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        PENDING_COOKIE,
        token,
        max_age=pending.PENDING_SECONDS,
        path=PENDING_PATH,
        secure=auth.cookie_is_secure(state(request).settings),
        httponly=True,
        samesite="strict",
    )


def _clear_pending_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        PENDING_COOKIE,
        path=PENDING_PATH,
        secure=auth.cookie_is_secure(state(request).settings),
        httponly=True,
        samesite="strict",
    )


def to_second_factor(
    request: Request, session: Session, person: PersonRow, next_path: str
) -> Response:
    """The password was right and no code came with it: a pending sign-in, and the second
    factor's page."""
    st = state(request)
    started = pending.begin(
        session, RequestContext(request.state.request_id, st.clock(), None), person
    )
    target = request.app.url_path_for("sign_in_second_factor_page")
    next_path = local_path(next_path)
    if next_path != auth.HOME:
        target += "?next=" + quote(next_path, safe="/")
    response = RedirectResponse(target, status_code=303)
    set_pending_cookie(response, request, started.token)
    return _no_store(response)


def _second_factor_form(
    request: Request,
    session: Session,
    person: PersonRow,
    next_path: str,
    status: int = 200,
    error: str | None = None,
) -> Response:
    return page(
        request,
        "console/second_factor.html",
        status,
        title="Your second factor",
        error=error,
        next_path=local_path(next_path),
        has_passkeys=passkeys.has_passkeys(session, person.id),
    )


def _restart(next_path: str) -> Response:
    return _no_store(RedirectResponse(auth.sign_in_url(next_path), status_code=303))


def _failed(request: Request, username: str) -> int | None:
    """Count a failed second factor as the one-form sign-in counts a failure: per address, and
    per username (the seconds to wait when that is over its limit)."""
    limiter = state(request).limiter
    limiter.take(limiter.failure_limit, "signin-fail-addr", source_address(request))
    return limiter.take(limiter.failure_limit, "signin-fail-user", username)


def _address_exhausted(request: Request) -> int | None:
    limiter = state(request).limiter
    return limiter.exhausted(limiter.failure_limit, "signin-fail-addr", source_address(request))


def _start(
    request: Request, session: Session, person: PersonRow, row: Any, response: Response
) -> Response:
    st = state(request)
    pending.finish(session, row)
    started = people.start_session(
        session,
        RequestContext(request.state.request_id, st.clock(), None),
        person,
        idle=auth.idle_timeout(st.settings),
        absolute=auth.absolute_timeout(st.settings),
    )
    auth.set_session_cookie(response, st.settings, started.token)
    _clear_pending_cookie(response, request)
    return _no_store(response)


@router.get("/sign-in/second-factor", name="sign_in_second_factor_page")
def second_factor_page(request: Request, session: UnitOfWork, next: str | None = None) -> Response:
    request.state.initiative = content.initiative_name(session)
    st = state(request)
    found = pending.resume(session, st.clock(), request.cookies.get(PENDING_COOKIE, ""))
    if found is None:
        return _restart(next or "")
    return _second_factor_form(request, session, found[0], next or "")


@router.post("/sign-in/second-factor", name="sign_in_second_factor")
def second_factor(
    request: Request,
    session: UnitOfWork,
    code: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """The TOTP code of a pending sign-in (works without JavaScript)."""
    request.state.error_page = error_page
    request.state.initiative = content.initiative_name(session)
    st = state(request)
    found = pending.resume(session, st.clock(), request.cookies.get(PENDING_COOKIE, ""))
    if found is None:
        return _restart(next)
    person, row = found
    retry = _address_exhausted(request)
    if retry is not None:
        return _too_many(request, session, person, retry, next)
    ctx = RequestContext(request.state.request_id, st.clock(), None)
    try:
        people.check_totp(session, ctx, st.master, person, code[:64])
    except SignInFailed:
        retry = _failed(request, person.username)
        if retry is not None:
            return _too_many(request, session, person, retry, next)
        return _second_factor_form(request, session, person, next, 401, SECOND_FACTOR_FAILED)
    return _start(
        request, session, person, row, RedirectResponse(local_path(next), status_code=303)
    )


def _too_many(
    request: Request, session: Session, person: PersonRow, retry: int, next_path: str
) -> Response:
    response = _second_factor_form(
        request,
        session,
        person,
        next_path,
        429,
        f"Too many failed sign-ins; try again in {retry} second(s).",
    )
    response.headers["Retry-After"] = str(retry)
    return response


def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInFailed)
    return _no_store(domain_error_response(request, exc))


@router.post("/sign-in/passkey/options", name="sign_in_passkey_options")
def sign_in_passkey_options(request: Request, session: UnitOfWork) -> Response:
    """The WebAuthn options for the pending sign-in's person: their passkeys, a new challenge."""
    st = state(request)
    found = pending.resume(session, st.clock(), request.cookies.get(PENDING_COOKIE, ""))
    if found is None:
        return _problem(request, SignInFailed())
    person, row = found
    retry = _address_exhausted(request)
    if retry is not None:
        return _no_store(domain_error_response(request, RateLimited(retry)))
    ctx = RequestContext(request.state.request_id, st.clock(), None)
    options = passkeys.sign_in_options(
        session, ctx, relying_party(request, session), person, pending.binding(row)
    )
    return _no_store(Response(options, media_type="application/json"))


@router.post("/sign-in/passkey", name="sign_in_passkey")
def sign_in_passkey(request: Request, session: UnitOfWork, body: PasskeySignInRequest) -> Response:
    """The passkey's answer for a pending sign-in: a session starts if it verifies."""
    st = state(request)
    found = pending.resume(session, st.clock(), request.cookies.get(PENDING_COOKIE, ""))
    if found is None:
        return _problem(request, SignInFailed())
    person, row = found
    retry = _address_exhausted(request)
    if retry is not None:
        return _no_store(domain_error_response(request, RateLimited(retry)))
    ctx = RequestContext(request.state.request_id, st.clock(), None)
    try:
        passkeys.check_passkey(
            session,
            ctx,
            relying_party(request, session),
            person,
            pending.binding(row),
            body.credential,
        )
    except SignInFailed as exc:
        retry = _failed(request, person.username)
        if retry is not None:
            return _no_store(domain_error_response(request, RateLimited(retry)))
        return _problem(request, exc)
    return _start(request, session, person, row, JSONResponse({"location": local_path(body.next)}))
