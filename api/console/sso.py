"""Signing in through the organization's own identity provider (OpenID Connect).

``GET /sign-in/sso?organization=ORG`` sends the browser to ORG's provider, with the sign-in in
progress sealed in a cookie scoped to ``/sign-in/sso`` (:mod:`identity.oidc_client`); the
provider sends it back to ``GET /sign-in/sso/callback``, which checks ``state`` against that
cookie, exchanges the code, verifies the ID token, finds the person
(:func:`identity.identity_providers.match_person`) and opens the same server-side session as a
local sign-in. A failure shows the sign-in page with what the person can do about it, and
counts against the source address as a failed local sign-in does.

The httpx transport the relying party uses is ``app.state.oidc_transport`` when set (the tests
put a fake provider there), else the network.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from api.console import auth
from api.console.auth import local_path
from api.console.pages import page
from api.deps import UnitOfWork, anonymous_context, state
from api.pages import content
from api.ratelimit import source_address
from core.db import read_only
from identity import identity_providers, people
from identity.identity_providers import SsoFailed
from identity.oidc_client import PENDING_SECONDS, RelyingParty, open_pending, seal_pending

router = APIRouter(include_in_schema=False)
logger = logging.getLogger("backbone.sso")
FLOW_COOKIE = "backbone_sso"
FLOW_PATH = "/sign-in/sso"
CALLBACK_PATH = "/sign-in/sso/callback"
FAIL_BUCKET = "signin-fail-addr"


def relying_party(request: Request) -> RelyingParty:
    """The application's relying party (its discovery and JWK set caches), made on first use."""
    found: RelyingParty | None = getattr(request.app.state, "oidc", None)
    if found is None:
        found = RelyingParty(getattr(request.app.state, "oidc_transport", None))
        request.app.state.oidc = found
    return found


def sign_in_choices(request: Request) -> list[tuple[str, str]]:
    """The organizations whose people sign in through their provider, for the sign-in page."""
    with state(request).sessions() as session:
        # Beside the request's own unit of work, which on SQLite holds the write lock already.
        read_only(session)
        return identity_providers.sign_in_choices(session)


def redirect_uri(request: Request) -> str:
    return state(request).settings.issuer.rstrip("/") + CALLBACK_PATH


def _form(request: Request, status: int, error: str, next_path: str) -> Response:
    return page(
        request,
        "console/sign_in.html",
        status,
        title="Sign in",
        error=error,
        next_path=local_path(next_path),
        sso_organizations=sign_in_choices(request),
    )


def _forget_flow(request: Request, response: Response) -> Response:
    response.delete_cookie(
        FLOW_COOKIE,
        path=FLOW_PATH,
        secure=auth.cookie_is_secure(state(request).settings),
        httponly=True,
        samesite="lax",
    )
    return response


def _too_many(request: Request) -> Response | None:
    limiter = state(request).limiter
    retry = limiter.exhausted(limiter.failure_limit, FAIL_BUCKET, source_address(request))
    if retry is None:
        return None
    response = _form(request, 429, f"Too many failed sign-ins; try again in {retry} second(s).", "")
    response.headers["Retry-After"] = str(retry)
    return response


def _failed(request: Request, exc: SsoFailed, next_path: str, organization: str) -> Response:
    limiter = state(request).limiter
    limiter.take(limiter.failure_limit, FAIL_BUCKET, source_address(request))
    # The reason's code and the organization only: never a token, a claim or a person.
    logger.info("sso sign-in failed: %s (organization %s)", exc.reason, organization)
    status = 502 if exc.reason == "provider" else 401
    return _forget_flow(request, _form(request, status, exc.detail, next_path))


@router.get(FLOW_PATH, name="sign_in_sso")
def sign_in_sso(
    request: Request, session: UnitOfWork, organization: str = "", next: str = ""
) -> Response:
    """Start signing in through ``organization``'s identity provider."""
    st = state(request)
    request.state.initiative = content.initiative_name(session)
    refused = _too_many(request)
    if refused is not None:
        return refused
    row = identity_providers.find_provider(session, organization)
    if row is None:
        exc = SsoFailed("organization", "This organization has no identity provider to sign in.")
        return _failed(request, exc, next, "-")
    config = identity_providers.config_of(st.master, row)
    try:
        url, pending = relying_party(request).begin(
            config, redirect_uri(request), local_path(next), st.clock()
        )
    except SsoFailed as exc:
        return _failed(request, exc, next, row.organization_id)
    response = RedirectResponse(url, status_code=303)
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(
        FLOW_COOKIE,
        seal_pending(st.master, pending),
        max_age=PENDING_SECONDS,
        path=FLOW_PATH,
        secure=auth.cookie_is_secure(st.settings),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get(CALLBACK_PATH, name="sign_in_sso_callback")
def sign_in_sso_callback(
    request: Request,
    session: UnitOfWork,
    code: str = "",
    error: str = "",
) -> Response:
    """Where the provider sends the browser back: finish the sign-in begun here."""
    st = state(request)
    request.state.initiative = content.initiative_name(session)
    refused = _too_many(request)
    if refused is not None:
        return _forget_flow(request, refused)
    now = st.clock()
    pending = open_pending(st.master, request.cookies.get(FLOW_COOKIE, ""), now)
    # ``state`` is read from the query as it is: a parameter of that name would hide api.deps.state
    returned_state = request.query_params.get("state", "")
    if pending is None or not people.csrf_matches(pending.state, returned_state):
        exc = SsoFailed(
            "state",
            "This sign-in expired or was started in another browser or tab; start again.",
        )
        return _failed(request, exc, "", "-")
    organization = pending.organization_id
    if error or not code:
        exc = SsoFailed("denied", "Your organization's identity provider did not sign you in.")
        return _failed(request, exc, pending.next_path, organization)
    row = identity_providers.find_provider(session, organization)
    if row is None:
        exc = SsoFailed("organization", "This organization has no identity provider to sign in.")
        return _failed(request, exc, pending.next_path, organization)
    config = identity_providers.config_of(st.master, row)
    try:
        claims = relying_party(request).finish(
            config, pending, code[:2048], redirect_uri(request), now
        )
        person = identity_providers.match_person(session, config, claims)
    except SsoFailed as exc:
        return _failed(request, exc, pending.next_path, organization)
    started = people.start_session(
        session,
        anonymous_context(request),
        person,
        idle=auth.idle_timeout(st.settings),
        absolute=auth.absolute_timeout(st.settings),
    )
    response = RedirectResponse(local_path(pending.next_path), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    auth.set_session_cookie(response, st.settings, started.token)
    return _forget_flow(request, response)
