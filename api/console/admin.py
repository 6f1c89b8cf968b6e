"""The administrators' console: organizations, clients and people.

Every page calls what the JSON route of :mod:`api.routers.admin` calls (the services of
:mod:`identity.service`), or, for people, the services of :mod:`identity.people` the ``backbone
person`` commands call, with the signed-in person's request context holding the scope ``admin``,
under the same audited action: a page changes nothing an API call by that person could not, and
the audit log names the person.

A client secret, a person's password and their TOTP secret are shown once, on the page that
answers the form that made them (``Cache-Control: no-store``, never in a URL), and never again.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from api.console.auth import check_csrf, signed_in
from api.console.pages import confirm_page, confirmed, page
from api.deps import UnitOfWork, audited, state
from api.routers import admin as admin_api
from api.schemas import JwksIn
from audit.actions import AuditAction
from audit.service import AuditRecord, record, record_listing
from core.context import RequestContext
from core.errors import InvalidInput, NotFound
from identity import people, service, signing_keys
from identity.scopes import ROLES
from policy.vocabulary import OrganizationKind

router = APIRouter(include_in_schema=False)
# The scope of every route of api.routers.admin.
ADMIN_SCOPE = "admin"
Admin = Annotated[RequestContext, Depends(signed_in(ADMIN_SCOPE))]
MAX_FIELD = 200
DONE = {
    "organization": "The organization is created.",
    "client-disabled": "The client is disabled: its tokens stop working from the next request.",
    "person-disabled": "The person is disabled and every session of theirs has ended.",
    "keys": "The client's public keys are registered: they replace the keys it had.",
    "rotated": "The signing key is rotated: new tokens are signed with the new key.",
}


def _text(value: str | None) -> str:
    return (value or "").strip()[:MAX_FIELD]


def _done(value: str | None, expected: str) -> str | None:
    """The note of a form that succeeded and redirected here (``?done=``), if it is this page's."""
    return DONE[expected] if value == expected else None


def _count_write(request: Request, ctx: RequestContext) -> None:
    """A form that changes something counts against the write limit, as the API route does."""
    assert ctx.principal is not None
    st = state(request)
    st.limiter.hit(st.limiter.write_limit, "write", ctx.principal.client_id)


def _redirect(path: str, **params: Any) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    response = RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


def _viewed(session: Session, ctx: RequestContext, action: AuditAction, kind: str, n: int) -> None:
    # The same event as the API's listing (GET /v1/organizations, /v1/clients), naming the person.
    record_listing(session, ctx, action, kind, n)


def _roles() -> list[dict[str, str]]:
    return [{"name": name, "kind": kind} for name, (kind, _) in sorted(ROLES.items())]


# -- organizations ------------------------------------------------------------------------------


@router.get(
    "/console/admin/organizations",
    name="console_admin_organizations",
    dependencies=[Depends(audited(AuditAction.ORGANIZATION_READ, "organization"))],
)
def organizations(
    request: Request, session: UnitOfWork, ctx: Admin, done: str | None = None
) -> Response:
    items = service.list_organizations(session)
    _viewed(session, ctx, AuditAction.ORGANIZATION_READ, "organization", len(items))
    return page(
        request,
        "console/admin/organizations.html",
        title="Organizations",
        section="console_admin_organizations",
        items=items,
        kinds=[k.value for k in OrganizationKind],
        done=_done(done, "organization"),
    )


@router.post(
    "/console/admin/organizations",
    name="console_admin_organization_create",
    dependencies=[Depends(audited(AuditAction.ORGANIZATION_CREATE, "organization"))],
)
def create_organization(
    request: Request,
    session: UnitOfWork,
    ctx: Admin,
    csrf: Annotated[str, Form()] = "",
    org_id: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    _count_write(request, ctx)
    if not _text(name):
        raise InvalidInput("An organization needs a name.")
    if _text(kind) not in {k.value for k in OrganizationKind}:
        raise InvalidInput("Choose the kind of the organization.")
    service.create_organization(session, ctx, _text(org_id), _text(name), _text(kind))
    return _redirect(request.url_for("console_admin_organizations").path, done="organization")


# -- clients ------------------------------------------------------------------------------------


@router.get(
    "/console/admin/clients",
    name="console_admin_clients",
    dependencies=[Depends(audited(AuditAction.CLIENT_READ, "client"))],
)
def clients(request: Request, session: UnitOfWork, ctx: Admin, done: str | None = None) -> Response:
    items = service.list_clients(session)
    _viewed(session, ctx, AuditAction.CLIENT_READ, "client", len(items))
    return page(
        request,
        "console/admin/clients.html",
        title="Clients",
        section="console_admin_clients",
        items=items,
        organizations=service.list_organizations(session),
        roles=_roles(),
        done=_done(done, "client-disabled"),
    )


def _secret_page(request: Request, client: Any, secret: str | None, created: bool) -> Response:
    return page(
        request,
        "console/admin/client_secret.html",
        title="Client created" if created else "Client secret rotated",
        section="console_admin_clients",
        section_title="Clients",
        client=client,
        secret=secret,
        created=created,
    )


@router.post(
    "/console/admin/clients",
    name="console_admin_client_create",
    dependencies=[Depends(audited(AuditAction.CLIENT_CREATE, "client"))],
)
def create_client(
    request: Request,
    session: UnitOfWork,
    ctx: Admin,
    csrf: Annotated[str, Form()] = "",
    organization: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    _count_write(request, ctx)
    if not _text(name):
        raise InvalidInput("A client needs a name.")
    issued = service.create_client(
        session,
        ctx,
        organization_id=_text(organization),
        name=_text(name),
        role=_text(role) or None,
    )
    return _secret_page(request, issued.client, issued.secret, created=True)


@router.post(
    "/console/admin/clients/{client_id}/secret",
    name="console_admin_client_rotate",
    dependencies=[Depends(audited(AuditAction.CLIENT_ROTATE_SECRET, "client", "client_id"))],
)
def rotate_secret(
    request: Request,
    client_id: str,
    session: UnitOfWork,
    ctx: Admin,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    _count_write(request, ctx)
    issued = service.rotate_secret(session, ctx, client_id)
    return _secret_page(request, issued.client, issued.secret, created=False)


@router.get(
    "/console/admin/clients/{client_id}/disable",
    name="console_admin_client_disable_confirm",
    dependencies=[Depends(audited(AuditAction.CLIENT_READ, "client", "client_id"))],
)
def disable_client_confirm(
    request: Request, client_id: str, session: UnitOfWork, ctx: Admin
) -> Response:
    client = next((c for c in service.list_clients(session) if c.id == client_id), None)
    if client is None:
        raise NotFound("No such client.")
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.CLIENT_READ,
            resource_type="client",
            resource_id=client.id,
            detail="disable-confirm",
        ),
    )
    done = client.disabled_at is not None
    return confirm_page(
        request,
        title=f"Disable {client.name}?",
        explanation=[
            "The client is already disabled."
            if done
            else f"Disabling the client {client.id} of {client.organization_id} stops it at "
            "once: its access tokens are refused from the next request on and it can get no "
            "new one. It cannot be undone."
        ],
        action_url=None
        if done
        else request.url_for("console_admin_client_disable", client_id=client.id).path,
        button="Disable the client",
        back_url=request.url_for("console_admin_clients").path,
        back_text="Back to the clients" if done else "Keep it and go back",
        section="console_admin_clients",
        section_title="Clients",
        confirm=("disable", "I understand that the client stops working now."),
        form_id="disable-form",
    )


@router.post(
    "/console/admin/clients/{client_id}/disable",
    name="console_admin_client_disable",
    dependencies=[Depends(audited(AuditAction.CLIENT_DISABLE, "client", "client_id"))],
)
def disable_client(
    request: Request,
    client_id: str,
    session: UnitOfWork,
    ctx: Admin,
    csrf: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    confirmed(confirm, "disable", "Tick the box to confirm that the client stops working now.")
    _count_write(request, ctx)
    service.disable_client(session, ctx, client_id)
    return _redirect(request.url_for("console_admin_clients").path, done="client-disabled")


# -- people -------------------------------------------------------------------------------------


@router.get(
    "/console/admin/people",
    name="console_admin_people",
    dependencies=[Depends(audited(AuditAction.PERSON_READ, "person"))],
)
def people_list(
    request: Request, session: UnitOfWork, ctx: Admin, done: str | None = None
) -> Response:
    items = people.list_people(session)
    _viewed(session, ctx, AuditAction.PERSON_READ, "person", len(items))
    return page(
        request,
        "console/admin/people.html",
        title="People",
        section="console_admin_people",
        items=items,
        organizations=service.list_organizations(session),
        roles=_roles(),
        done=_done(done, "person-disabled"),
    )


@router.post(
    "/console/admin/people",
    name="console_admin_person_create",
    dependencies=[Depends(audited(AuditAction.PERSON_CREATE, "person"))],
)
def create_person(
    request: Request,
    session: UnitOfWork,
    ctx: Admin,
    csrf: Annotated[str, Form()] = "",
    organization: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    username: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    _count_write(request, ctx)
    st = state(request)
    enrolled = people.create_person(
        session,
        ctx,
        st.master,
        organization_id=_text(organization),
        username=_text(username),
        role=_text(role),
        name=_text(name) or None,
        issuer=getattr(request.state, "initiative", "Backbone"),
    )
    return page(
        request,
        "console/admin/person_created.html",
        title="Person created",
        section="console_admin_people",
        section_title="People",
        person=enrolled.person,
        password=enrolled.password,
        totp_secret=enrolled.totp_secret,
        provisioning_uri=enrolled.provisioning_uri,
    )


@router.get(
    "/console/admin/people/{username}/disable",
    name="console_admin_person_disable_confirm",
    dependencies=[Depends(audited(AuditAction.PERSON_READ, "person", "username"))],
)
def disable_person_confirm(
    request: Request, username: str, session: UnitOfWork, ctx: Admin
) -> Response:
    person = next((p for p in people.list_people(session) if p.username == username), None)
    if person is None:
        raise NotFound("No person has this username.")
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.PERSON_READ,
            resource_type="person",
            resource_id=person.id,
            detail="disable-confirm",
        ),
    )
    done = person.disabled_at is not None
    return confirm_page(
        request,
        title=f"Disable {person.name}?",
        explanation=[
            "This person is already disabled."
            if done
            else f"Disabling {person.username} ({person.role} of {person.organization_id}) ends "
            "every session of theirs now, and they can no longer sign in."
        ],
        action_url=None
        if done
        else request.url_for("console_admin_person_disable", username=person.username).path,
        button="Disable the person",
        back_url=request.url_for("console_admin_people").path,
        back_text="Back to the people" if done else "Keep them and go back",
        section="console_admin_people",
        section_title="People",
        confirm=("disable", "I understand that this person can no longer sign in."),
        form_id="disable-form",
    )


@router.post(
    "/console/admin/people/{username}/disable",
    name="console_admin_person_disable",
    dependencies=[Depends(audited(AuditAction.PERSON_DISABLE, "person", "username"))],
)
def disable_person(
    request: Request,
    username: str,
    session: UnitOfWork,
    ctx: Admin,
    csrf: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    confirmed(confirm, "disable", "Tick the box to confirm that the person can no longer sign in.")
    _count_write(request, ctx)
    people.disable_person(session, ctx, username)
    return _redirect(request.url_for("console_admin_people").path, done="person-disabled")


# -- client keys and the token signing key ------------------------------------------------------

MAX_JWKS = 20_000


def _client_row(session: Session, client_id: str) -> Any:
    client = next((c for c in service.list_clients(session) if c.id == client_id), None)
    if client is None:
        raise NotFound("No such client.")
    return client


@router.get(
    "/console/admin/clients/{client_id}/keys",
    name="console_admin_client_keys",
    dependencies=[Depends(audited(AuditAction.CLIENT_READ, "client", "client_id"))],
)
def client_keys(
    request: Request, client_id: str, session: UnitOfWork, ctx: Admin, done: str | None = None
) -> Response:
    client = _client_row(session, client_id)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.CLIENT_READ,
            resource_type="client",
            resource_id=client.id,
            detail="keys",
        ),
    )
    return page(
        request,
        "console/admin/client_keys.html",
        title=f"Public keys of {client.name}",
        section="console_admin_clients",
        section_title="Clients",
        client=client,
        keys=(client.jwks or {}).get("keys", []),
        done=_done(done, "keys"),
    )


@router.post(
    "/console/admin/clients/{client_id}/keys",
    name="console_admin_client_keys_register",
    dependencies=[Depends(audited(AuditAction.CLIENT_REGISTER_KEYS, "client", "client_id"))],
)
def register_client_keys(
    request: Request,
    client_id: str,
    session: UnitOfWork,
    ctx: Admin,
    csrf: Annotated[str, Form()] = "",
    jwks: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    _count_write(request, ctx)
    if len(jwks) > MAX_JWKS:
        raise InvalidInput(f"A JWK set is at most {MAX_JWKS} characters here.")
    try:
        body = JwksIn.model_validate_json(jwks)
    except ValueError:
        raise InvalidInput(
            'Paste the client\'s public keys as a JWK set: {"keys": [{"kty": "EC", ...}]}.'
        ) from None
    # POST /v1/clients/{id}/keys itself: the same checks (public keys only) and audit event.
    admin_api.register_keys(client_id, body, session, ctx)
    return _redirect(
        request.url_for("console_admin_client_keys", client_id=client_id).path, done="keys"
    )


@router.get(
    "/console/admin/signing-key",
    name="console_admin_signing_key",
    dependencies=[Depends(audited(AuditAction.CLIENT_READ, "signing_key"))],
)
def signing_key(
    request: Request, session: UnitOfWork, ctx: Admin, done: str | None = None
) -> Response:
    st = state(request)
    current = signing_keys.current_signing_key(session)
    published = signing_keys.published_jwks(session, ctx.now)["keys"]
    ttl = int(st.oauth.token_ttl.total_seconds())
    return confirm_page(
        request,
        title="The token signing key",
        facts=[
            ("Current key", current.kid if current else "None yet (made at the first token)"),
            (
                "Created (UTC)",
                current.created_at.isoformat()[:19].replace("T", " ") if current else "—",
            ),
            ("Keys published now", ", ".join(str(k.get("kid")) for k in published) or "None"),
            ("Access tokens live", f"{ttl} seconds"),
        ],
        explanation=[
            "Rotating makes a new key that signs every access token from now on. The old key "
            "is retired but stays published at /oauth/jwks.json until the last token it "
            f"signed has expired: for {ttl + 60} seconds (the token lifetime and a minute), so "
            "no live token stops working. After that it is no longer published.",
            "Rotate when the key may have leaked, or on your schedule. Resource servers that "
            "cache the key set pick up the new key on their next fetch.",
        ],
        action_url=request.url_for("console_admin_signing_key_rotate").path,
        button="Rotate the signing key",
        back_url=request.url_for("console_home").path,
        back_text="Back to the console",
        section="console_admin_signing_key",
        confirm=("rotate", "I understand that new tokens are signed with a new key from now on."),
        done=_done(done, "rotated"),
    )


@router.post(
    "/console/admin/signing-key/rotate",
    name="console_admin_signing_key_rotate",
    dependencies=[Depends(audited(AuditAction.SIGNING_KEY_ROTATE, "signing_key"))],
)
def rotate_signing_key(
    request: Request,
    session: UnitOfWork,
    ctx: Admin,
    csrf: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    confirmed(confirm, "rotate", "Tick the box to confirm that the signing key is rotated.")
    _count_write(request, ctx)
    # POST /v1/keys/rotate itself: the same service, audit event and key cache invalidation.
    admin_api.rotate_signing_key(request, session, ctx)
    return _redirect(request.url_for("console_admin_signing_key").path, done="rotated")
