"""Administration of organizations, clients and signing keys, and token issuance."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from authlib.oauth2.rfc6749 import OAuth2Error
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import Conflict, InvalidInput, NotFound
from core.ids import new_id
from core.keys import MasterKey
from identity import signing_keys
from identity.auth_state import record_change
from identity.models import Client, Organization, RevokedToken, UsedClientAssertion
from identity.oauth_server import (
    AUTH_METHODS,
    Admission,
    BackboneAuthorizationServer,
    HttpRequest,
    OAuthResponse,
    ServerConfig,
)
from identity.scopes import ALLOWED_BY_KIND, ORGANIZATION_KINDS, ROLES, SCOPES
from identity.secret_hash import generate_secret, hash_secret
from policy.model import PUBLIC, Principal

_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class IssuedClient:
    client: Client
    secret: str | None  # shown once


def create_organization(
    session: Session, ctx: RequestContext, org_id: str, name: str, kind: str
) -> Organization:
    if not _SLUG.match(org_id):
        raise InvalidInput(
            "An organization id is 1-64 lower-case letters, digits, '.', '_' or '-'."
        )
    if org_id == PUBLIC:
        # Agreements and indicators name the public by this id: an organization holding it
        # would read every release published to everyone as a named recipient.
        raise InvalidInput(
            f"The organization id '{PUBLIC}' is reserved: it names the public as a recipient."
        )
    if kind not in ORGANIZATION_KINDS:
        raise InvalidInput(
            f"An organization kind is one of {', '.join(sorted(ORGANIZATION_KINDS))}."
        )
    if session.get(Organization, org_id) is not None:
        raise Conflict("An organization with this id already exists.")
    org = Organization(id=org_id, name=name, kind=kind, created_at=ctx.now)
    session.add(org)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.ORGANIZATION_CREATE, resource_type="organization", resource_id=org_id
        ),
    )
    return org


def list_organizations(session: Session) -> Sequence[Organization]:
    return session.scalars(select(Organization).order_by(Organization.id)).all()


def _check_scopes(org: Organization, scopes: frozenset[str]) -> None:
    unknown = scopes - set(SCOPES)
    if unknown:
        raise InvalidInput(f"Unknown scope(s): {' '.join(sorted(unknown))}.")
    beyond = scopes - ALLOWED_BY_KIND[org.kind]
    if beyond:
        raise InvalidInput(
            f"An organization of kind {org.kind} cannot hold: {' '.join(sorted(beyond))}."
        )


def _check_jwks(jwks: dict[str, Any] | None) -> dict[str, Any] | None:
    if jwks is None:
        return None
    try:
        keys = KeySet.import_key_set(cast(Any, jwks))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidInput("The JWK set could not be read.") from exc
    public = {"keys": [k.as_dict(private=False) for k in keys.keys]}
    if not public["keys"]:
        raise InvalidInput("The JWK set holds no keys.")
    if any(k.get("kty") == "oct" for k in public["keys"]):
        raise InvalidInput("Symmetric keys are not accepted; register public keys only.")
    if any("d" in k for k in jwks.get("keys", [])):
        raise InvalidInput("The JWK set contains private key material; register public keys only.")
    return public


def create_client(
    session: Session,
    ctx: RequestContext,
    *,
    organization_id: str,
    name: str,
    role: str | None = None,
    scopes: frozenset[str] | None = None,
    auth_method: str = "client_secret_basic",
    jwks: dict[str, Any] | None = None,
    client_id: str | None = None,
) -> IssuedClient:
    org = session.get(Organization, organization_id)
    if org is None:
        raise NotFound("No such organization.")
    if auth_method not in AUTH_METHODS:
        raise InvalidInput(f"Authentication method must be one of {', '.join(AUTH_METHODS)}.")
    if role is not None:
        if role not in ROLES:
            raise InvalidInput(f"Role must be one of {', '.join(sorted(ROLES))}.")
        kind, role_scopes = ROLES[role]
        if kind not in ("*", org.kind):
            raise InvalidInput(f"Role {role} is for organizations of kind {kind}.")
        scopes = (scopes or frozenset()) | role_scopes
    if not scopes:
        raise InvalidInput("A client needs a role or at least one scope.")
    _check_scopes(org, scopes)
    public_jwks = _check_jwks(jwks)
    if auth_method == "private_key_jwt" and public_jwks is None:
        raise InvalidInput("private_key_jwt needs the client's public JWK set.")
    cid = client_id or new_id("cli")
    if not _SLUG.match(cid) and not cid.startswith("cli_"):
        raise InvalidInput("A client id is 1-64 lower-case letters, digits, '.', '_' or '-'.")
    if session.get(Client, cid) is not None:
        raise Conflict("A client with this id already exists.")
    secret = generate_secret() if auth_method != "private_key_jwt" else None
    client = Client(
        id=cid,
        organization_id=org.id,
        name=name,
        role=role or "custom",
        scopes=" ".join(sorted(scopes)),
        token_endpoint_auth_method=auth_method,
        secret_hash=hash_secret(secret) if secret else None,
        jwks=public_jwks,
        created_at=ctx.now,
    )
    session.add(client)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(action=AuditAction.CLIENT_CREATE, resource_type="client", resource_id=cid),
    )
    return IssuedClient(client, secret)


def list_clients(session: Session, organization_id: str | None = None) -> Sequence[Client]:
    query = select(Client).order_by(Client.id)
    if organization_id is not None:
        query = query.where(Client.organization_id == organization_id)
    return session.scalars(query).all()


def _client(session: Session, client_id: str) -> Client:
    client = session.get(Client, client_id)
    if client is None:
        raise NotFound("No such client.")
    return client


def rotate_secret(session: Session, ctx: RequestContext, client_id: str) -> IssuedClient:
    client = _client(session, client_id)
    if client.token_endpoint_auth_method == "private_key_jwt":
        raise Conflict("This client authenticates with private_key_jwt and has no secret.")
    secret = generate_secret()
    client.secret_hash = hash_secret(secret)
    client.secret_rotated_at = ctx.now
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.CLIENT_ROTATE_SECRET, resource_type="client", resource_id=client_id
        ),
    )
    return IssuedClient(client, secret)


def register_keys(
    session: Session, ctx: RequestContext, client_id: str, jwks: dict[str, Any]
) -> Client:
    client = _client(session, client_id)
    client.jwks = _check_jwks(jwks)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.CLIENT_REGISTER_KEYS, resource_type="client", resource_id=client_id
        ),
    )
    return client


def disable_client(session: Session, ctx: RequestContext, client_id: str) -> Client:
    """Disable a client: new tokens are refused and its live tokens stop working at once."""
    client = _client(session, client_id)
    if client.disabled_at is None:
        client.disabled_at = ctx.now
        record_change(session, "disable", client_id, ctx.now)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.CLIENT_DISABLE, resource_type="client", resource_id=client_id
        ),
    )
    return client


def rotate_signing_key(
    session: Session, ctx: RequestContext, master: MasterKey, token_ttl: timedelta
) -> str:
    row = signing_keys.rotate_signing_key(session, master, ctx.now, token_ttl)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.SIGNING_KEY_ROTATE, resource_type="signing_key", resource_id=row.kid
        ),
    )
    return row.kid


def _deleted(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def purge_expired(session: Session, ctx: RequestContext) -> int:
    """Forget revocations and assertion ids whose tokens have expired anyway."""
    n = _deleted(session.execute(delete(RevokedToken).where(RevokedToken.expires_at < ctx.now)))
    n += _deleted(
        session.execute(delete(UsedClientAssertion).where(UsedClientAssertion.expires_at < ctx.now))
    )
    return int(n)


def oauth_endpoint(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    config: ServerConfig,
    public_keys: KeySet,
    endpoint: str,
    request: HttpRequest,
    admit: Admission | None = None,
) -> OAuthResponse:
    """Run the token, revocation or introspection endpoint and audit the outcome.

    ``admit`` is asked, once a client has authenticated, whether its own allowance permits the
    request; the response names the client that authenticated, if any.
    """
    key_row = signing_keys.ensure_signing_key(session, master, ctx.now)
    active = signing_keys.load_private_key(key_row, master)
    server = BackboneAuthorizationServer(
        session, config, active.key, public_keys, ctx.now, request.url, admit
    )
    try:
        if endpoint == "token":
            response: OAuthResponse = server.create_token_response(request)
        else:
            response = server.create_endpoint_response(endpoint, request)
    except OAuth2Error as error:
        # Raised before Authlib's own handling, e.g. plain http outside the loopback interface.
        response = server.handle_error_response(request, error)
    client = server.authenticated_client
    claimed_ids = request.form.get("client_id") or []
    claimed = claimed_ids[0] if claimed_ids else None
    outcome = "succeeded" if response.status == 200 else "denied"
    who = ctx
    if client is not None:
        org = session.get(Organization, client.organization_id)
        who = RequestContext(
            request_id=ctx.request_id,
            now=ctx.now,
            principal=Principal(
                client.id, client.organization_id, org.kind if org else "", client.scope_set
            ),
        )
    detail = None if response.status == 200 else str(response.body.get("error", "error"))
    if client is None and claimed and session.get(Client, str(claimed)[:64]) is not None:
        detail = f"{detail}; client {str(claimed)[:64]}"
    record(
        session,
        who,
        AuditRecord(
            action=AuditAction(f"oauth.{endpoint}"),
            outcome=outcome,
            resource_type="token",
            detail=detail,
            counts={"status": response.status},
        ),
    )
    return dataclasses.replace(response, client_id=client.id if client is not None else None)
