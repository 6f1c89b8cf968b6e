"""Organizations and clients (scope ``admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from api.deps import UnitOfWork, audited, require, state
from api.schemas import ClientIn, ClientOut, JwksIn, OrganizationIn, OrganizationOut, SigningKeyOut
from audit.actions import AuditAction
from audit.service import record_listing
from core.context import RequestContext
from identity import service
from identity.models import Client

router = APIRouter(prefix="/v1", tags=["administration"])
Admin = Annotated[RequestContext, Depends(require("admin", write=True))]


def _client_out(client: Client, secret: str | None = None) -> ClientOut:
    return ClientOut(
        client_id=client.id,
        organization=client.organization_id,
        name=client.name,
        role=client.role,
        scopes=sorted(client.scope_set),
        token_endpoint_auth_method=client.token_endpoint_auth_method,
        disabled=client.disabled_at is not None,
        client_secret=secret,
    )


@router.post(
    "/organizations",
    status_code=201,
    response_model=OrganizationOut,
    dependencies=[Depends(audited(AuditAction.ORGANIZATION_CREATE, "organization"))],
)
def create_organization(body: OrganizationIn, session: UnitOfWork, ctx: Admin) -> OrganizationOut:
    org = service.create_organization(session, ctx, body.id, body.name, body.kind)
    return OrganizationOut(id=org.id, name=org.name, kind=org.kind)


@router.get("/organizations", response_model=list[OrganizationOut])
def list_organizations(session: UnitOfWork, ctx: Admin) -> list[OrganizationOut]:
    items = service.list_organizations(session)
    record_listing(session, ctx, AuditAction.ORGANIZATION_READ, "organization", len(items))
    return [OrganizationOut(id=o.id, name=o.name, kind=o.kind) for o in items]


@router.post(
    "/clients",
    status_code=201,
    response_model=ClientOut,
    dependencies=[Depends(audited(AuditAction.CLIENT_CREATE, "client"))],
)
def create_client(body: ClientIn, session: UnitOfWork, ctx: Admin) -> ClientOut:
    issued = service.create_client(
        session,
        ctx,
        organization_id=body.organization,
        name=body.name,
        role=body.role,
        scopes=frozenset(body.scopes) or None,
        auth_method=body.token_endpoint_auth_method,
        jwks=body.jwks,
        client_id=body.client_id,
    )
    return _client_out(issued.client, issued.secret)


@router.get("/clients", response_model=list[ClientOut])
def list_clients(
    session: UnitOfWork, ctx: Admin, organization: str | None = None
) -> list[ClientOut]:
    items = service.list_clients(session, organization)
    record_listing(session, ctx, AuditAction.CLIENT_READ, "client", len(items))
    return [_client_out(c) for c in items]


@router.post(
    "/clients/{client_id}/secret",
    response_model=ClientOut,
    dependencies=[Depends(audited(AuditAction.CLIENT_ROTATE_SECRET, "client", "client_id"))],
)
def rotate_secret(client_id: str, session: UnitOfWork, ctx: Admin) -> ClientOut:
    issued = service.rotate_secret(session, ctx, client_id)
    return _client_out(issued.client, issued.secret)


@router.post(
    "/clients/{client_id}/keys",
    response_model=ClientOut,
    dependencies=[Depends(audited(AuditAction.CLIENT_REGISTER_KEYS, "client", "client_id"))],
)
def register_keys(client_id: str, body: JwksIn, session: UnitOfWork, ctx: Admin) -> ClientOut:
    return _client_out(service.register_keys(session, ctx, client_id, body.model_dump()))


@router.post(
    "/clients/{client_id}/disable",
    response_model=ClientOut,
    dependencies=[Depends(audited(AuditAction.CLIENT_DISABLE, "client", "client_id"))],
)
def disable_client(client_id: str, session: UnitOfWork, ctx: Admin) -> ClientOut:
    return _client_out(service.disable_client(session, ctx, client_id))


@router.post(
    "/keys/rotate",
    response_model=SigningKeyOut,
    response_model_exclude_unset=True,
    summary="Rotate the access-token signing key",
    dependencies=[Depends(audited(AuditAction.SIGNING_KEY_ROTATE, "signing_key"))],
)
def rotate_signing_key(request: Request, session: UnitOfWork, ctx: Admin) -> dict[str, str]:
    st = state(request)
    kid = service.rotate_signing_key(session, ctx, st.master, st.oauth.token_ttl)
    st.keys.invalidate()
    return {"kid": kid}
