"""Signing people in to the console: the session cookie, CSRF, and the dependency of every page.

How to build a role's console on this foundation (the auditor's, :mod:`api.console.routes`, is
the worked example):

* Declare what the page does as the API route does, then ask for a signed-in person with the
  scopes the API route asks for::

      @router.get("/console/things", name="console_things",
                  dependencies=[Depends(audited(AuditAction.THING_READ, "thing"))])
      def things(request: Request, session: UnitOfWork,
                 ctx: Annotated[RequestContext, Depends(signed_in("things:read"))]) -> Response:
          items = things_service.list_things(session, ctx, ...)   # the API's own service
          return page(request, "console/things.html", title="Things",
                      section="console_things", items=items)   # api.console.pages.page

  :func:`signed_in` returns the :class:`~core.context.RequestContext` of the person: its
  principal is ``Principal(client_id="person:<id>", organization_id=..., organization_kind=...,
  scopes=<the role's scopes>)``, exactly what a client of that organization and role presents,
  so the service, the policy engine and the audit event treat the page as an API call by that
  person. Never query tables from a page: call the service the API route calls.
* No valid session: the browser is sent to ``/sign-in?next=<this page>`` (303). The role lacks
  a scope: a 403 page, and the refusal is audited under the route's action, naming the person.
  Any domain error the service raises becomes a page with the status the API would answer
  (``request.state.error_page``, see :func:`api.errors.install`), after the unit of work has
  rolled back and audited the refusal, as for the API.
* The person signed in is :func:`current` (a :class:`SignedInPerson`); templates extend
  ``console/layout.html`` (the header names the person and has the sign-out button) and fill
  its ``console`` block.
* Every state-changing form is a POST carrying the session's CSRF token in a hidden field named
  ``csrf`` (``{{ console.csrf_token }}`` in a template); the route calls :func:`check_csrf`
  before doing anything.
* Add the page to :data:`api.console.routes.SECTIONS` so that the console's home links to it
  for the people whose role has the scopes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from api.console.pages import error_page
from api.deps import record_refusal, state
from api.pages import content
from core.context import RequestContext
from core.settings import Settings
from identity import people
from identity.errors import CsrfRefused, InsufficientScope

SESSION_COOKIE = "backbone_session"
HOME = "/console"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page, then back to ``next``."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign-in required")
        self.next_path = next_path


@dataclass(frozen=True)
class SignedInPerson:
    """Who is signed in, for the page's header and forms (no secret but the CSRF token, which
    belongs in the page)."""

    person_id: str
    username: str
    name: str
    role: str
    organization_id: str
    organization_name: str
    scopes: frozenset[str]
    csrf_token: str


def local_path(value: str | None) -> str:
    """``value`` if it is a path on this site (``/console/audit?...``), else the console's home:
    a ``next`` parameter must never send the browser elsewhere."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return HOME
    if any(ch in value for ch in "\\\r\n\t") or any(ord(ch) < 32 for ch in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    return value


def cookie_is_secure(settings: Settings) -> bool:
    """Cookies are ``Secure`` unless the service is served over plain http on this machine."""
    issuer = urlsplit(settings.issuer)
    return not (issuer.scheme == "http" and issuer.hostname in LOCAL_HOSTS)


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_max_seconds,
        path="/",
        secure=cookie_is_secure(settings),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        secure=cookie_is_secure(settings),
        httponly=True,
        samesite="lax",
    )


def idle_timeout(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.session_idle_seconds)


def absolute_timeout(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.session_max_seconds)


def current(request: Request) -> SignedInPerson | None:
    """The person signed in for this request, once :func:`signed_in` has run."""
    found: SignedInPerson | None = getattr(request.state, "console", None)
    return found


def _this_page(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def sign_in_url(next_path: str) -> str:
    return "/sign-in?next=" + quote(local_path(next_path), safe="/")


def signed_in(*scopes: str) -> Callable[..., RequestContext]:
    """A dependency for console pages: the signed-in person's request context, holding *all* of
    ``scopes``. Without a live session it raises :class:`SignInRequired` (a 303 to the sign-in
    page); without a scope, :class:`~identity.errors.InsufficientScope` (a 403 page, audited)."""
    required = frozenset(scopes)

    def dependency(request: Request) -> RequestContext:
        request.state.error_page = error_page
        st = state(request)
        now = st.clock()
        # A transaction of its own, ended before the page's unit of work begins: a refusal is
        # audited in yet another, which must not wait on (or be rolled back with) this one.
        with st.sessions() as session:
            request.state.initiative = content.initiative_name(session)
            found = people.resume_session(session, now, request.cookies.get(SESSION_COOKIE, ""))
            if found is None:
                raise SignInRequired(_this_page(request))
            person, row = found
            principal = people.principal_of(person)
            request.state.console = SignedInPerson(
                person_id=person.id,
                username=person.username,
                name=person.name,
                role=person.role,
                organization_id=person.organization_id,
                organization_name=person.organization.name,
                scopes=principal.scopes,
                csrf_token=row.csrf_secret,
            )
            request.state.person_session_id = row.id
            admitted = required <= principal.scopes
            if admitted:
                people.touch_session(session, row, now, idle_timeout(st.settings))
                session.commit()
        request.state.principal = principal
        if not admitted:
            exc = InsufficientScope(required)
            record_refusal(request, exc)
            raise exc
        return RequestContext(request.state.request_id, now, principal)

    return dependency


def session_id(request: Request) -> str:
    """The id of the session of a request :func:`signed_in` has admitted."""
    found: str = request.state.person_session_id
    return found


def check_csrf(request: Request, token: str | None) -> None:
    """Refuse (403) a state-changing form that does not carry this session's CSRF token."""
    person = current(request)
    if person is None or not token or not people.csrf_matches(person.csrf_token, token):
        raise CsrfRefused()


async def redirect_to_sign_in(request: Request, exc: Exception) -> Response:
    """The answer to :class:`SignInRequired`: 303 to the sign-in page, back here afterwards."""
    assert isinstance(exc, SignInRequired)
    response = RedirectResponse(sign_in_url(exc.next_path), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response
