"""Organizations' own OpenID Connect providers, and the people who sign in through them.

An organization has at most one provider. Its client secret is sealed at rest under the master
key's ``oidc-client-secret/v1`` purpose key, bound to the organization's id, and never shown
again once set.

People are provisioned by an administrator first (:func:`create_oidc_person`), with their
role: the provider says who someone is, never what they may do, so nobody is created "just in
time" from a provider's answer. A person is matched within the provider's own organization,
first by the ``sub`` pinned at their first sign-in; failing that, by the value of the
provider's configured claim (``preferred_username`` or ``email``), after which that ``sub`` is
pinned. A person already pinned to another ``sub`` is refused: an account renamed at the
provider cannot take over someone else's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import Conflict, DomainError, InvalidInput, NotFound
from core.ids import new_id
from core.keys import MasterKey, seal, unseal
from identity import people
from identity.models import IdentityProvider, Organization, Person

SECRET_PURPOSE = "oidc-client-secret/v1"
LOCAL = "local"
OIDC = "oidc"
CLAIMS = ("preferred_username", "email")
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
DEFAULT_SCOPES = "openid profile email"
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$")
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class SsoFailed(DomainError):
    """A sign-in through an organization's identity provider that did not succeed. ``reason`` is
    a stable code for tests and logs; the message says what the person can do about it, and
    never repeats a token, a claim or who the provider said they were."""

    kind = "sso-failed"
    title = "Sign-in with the identity provider failed"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ProviderConfig:
    """What the sign-in flow needs of a provider, the secret unsealed (never displayed)."""

    organization_id: str
    issuer: str
    client_id: str
    client_secret: str
    token_endpoint_auth_method: str
    scopes: str
    claim: str
    allowed_domains: tuple[str, ...]


def _key(master: MasterKey) -> bytes:
    return master.derive(SECRET_PURPOSE)


def _ad(organization_id: str) -> bytes:
    return f"identity-provider:{organization_id}".encode()


def check_issuer(issuer: str) -> str:
    """An issuer URL: https (plain http only on this machine, for testing), no query or
    fragment; returned without a trailing slash."""
    issuer = issuer.strip().rstrip("/")
    parts = urlsplit(issuer)
    local = parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS
    if (parts.scheme != "https" and not local) or not parts.hostname:
        raise InvalidInput("The issuer must be an https:// URL.")
    if parts.query or parts.fragment or len(issuer) > 500:
        raise InvalidInput("The issuer URL has no query or fragment and is at most 500 long.")
    return issuer


def _scopes(scopes: str) -> str:
    names = scopes.split()
    if "openid" not in names:
        names.insert(0, "openid")
    if not all(_SCOPE.match(n) for n in names) or len(" ".join(names)) > 500:
        raise InvalidInput("Scopes are space-separated OAuth scope names.")
    return " ".join(dict.fromkeys(names))


def _domains(domains: Sequence[str]) -> str | None:
    cleaned = [d.strip().lower().lstrip("@") for d in domains if d.strip()]
    if not all(_DOMAIN.match(d) for d in cleaned):
        raise InvalidInput("An allowed domain is a DNS name such as example.org.")
    return " ".join(dict.fromkeys(cleaned)) or None


def set_provider(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    *,
    organization_id: str,
    issuer: str,
    client_id: str,
    client_secret: str,
    token_endpoint_auth_method: str = AUTH_METHODS[0],
    scopes: str = DEFAULT_SCOPES,
    claim: str = "preferred_username",
    allowed_domains: Sequence[str] = (),
) -> IdentityProvider:
    """Set (create or replace) ``organization_id``'s provider. Flushes; audited as
    ``identity_provider.set``."""
    if session.get(Organization, organization_id) is None:
        raise NotFound("No such organization.")
    client_id = client_id.strip()
    if not client_id or len(client_id) > 255:
        raise InvalidInput("A client id is 1 to 255 characters long.")
    if not client_secret or len(client_secret) > 1024:
        raise InvalidInput("A client secret is 1 to 1024 characters long.")
    if token_endpoint_auth_method not in AUTH_METHODS:
        raise InvalidInput(f"The token endpoint auth method is one of {', '.join(AUTH_METHODS)}.")
    if claim not in CLAIMS:
        raise InvalidInput(f"The claim that names a person is one of {', '.join(CLAIMS)}.")
    values: dict[str, Any] = {
        "issuer": check_issuer(issuer),
        "client_id": client_id,
        "client_secret_sealed": seal(_key(master), client_secret.encode(), _ad(organization_id)),
        "token_endpoint_auth_method": token_endpoint_auth_method,
        "scopes": _scopes(scopes),
        "claim": claim,
        "allowed_domains": _domains(allowed_domains),
        "updated_at": ctx.now,
    }
    row = session.get(IdentityProvider, organization_id)
    if row is None:
        row = IdentityProvider(organization_id=organization_id, created_at=ctx.now, **values)
        session.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.IDENTITY_PROVIDER_SET,
            resource_type="organization",
            resource_id=organization_id,
        ),
    )
    return row


def find_provider(session: Session, organization_id: str) -> IdentityProvider | None:
    """The provider of ``organization_id``, if it has one."""
    return session.get(IdentityProvider, organization_id[:64])


def get_provider(session: Session, organization_id: str) -> IdentityProvider:
    """The provider of ``organization_id``; :class:`NotFound` if it has none."""
    row = session.get(IdentityProvider, organization_id)
    if row is None:
        raise NotFound("This organization has no identity provider.")
    return row


def describe(row: IdentityProvider) -> dict[str, Any]:
    """A provider's settings for display: everything but the secret."""
    return {
        "organization": row.organization_id,
        "issuer": row.issuer,
        "client_id": row.client_id,
        "token_endpoint_auth_method": row.token_endpoint_auth_method,
        "scopes": row.scopes,
        "claim": row.claim,
        "allowed_domains": (row.allowed_domains or "").split(),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def remove_provider(session: Session, ctx: RequestContext, organization_id: str) -> None:
    """Remove ``organization_id``'s provider: its people can no longer sign in (their live
    sessions run out as usual). Flushes; audited as ``identity_provider.remove``."""
    session.delete(get_provider(session, organization_id))
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.IDENTITY_PROVIDER_REMOVE,
            resource_type="organization",
            resource_id=organization_id,
        ),
    )


def config_of(master: MasterKey, row: IdentityProvider) -> ProviderConfig:
    """The provider's settings with its client secret unsealed, for the sign-in flow."""
    secret = unseal(_key(master), row.client_secret_sealed, _ad(row.organization_id)).decode()
    return ProviderConfig(
        organization_id=row.organization_id,
        issuer=row.issuer,
        client_id=row.client_id,
        client_secret=secret,
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        scopes=row.scopes,
        claim=row.claim,
        allowed_domains=tuple((row.allowed_domains or "").split()),
    )


def sign_in_choices(session: Session) -> list[tuple[str, str]]:
    """``(organization id, name)`` of every organization whose people may sign in through its
    provider, by name: the sign-in page offers them."""
    rows = session.execute(
        select(Organization.id, Organization.name)
        .join(IdentityProvider, IdentityProvider.organization_id == Organization.id)
        .order_by(Organization.name)
    ).all()
    return [(org_id, name) for org_id, name in rows]


def create_oidc_person(
    session: Session,
    ctx: RequestContext,
    *,
    organization_id: str,
    username: str,
    role: str,
    name: str | None = None,
    login: str | None = None,
    subject: str | None = None,
) -> Person:
    """Provision a person of ``organization_id`` who signs in through its provider: matched at
    their first sign-in by the provider's claim equal to ``login`` (default: the username), or
    by ``subject`` if the provider's ``sub`` is known already. No password, no TOTP secret.
    Flushes; audited as ``person.create``."""
    people.check_new_person(session, organization_id=organization_id, username=username, role=role)
    login = (login or username).strip().lower()
    if not login or len(login) > 255:
        raise InvalidInput("A login is 1 to 255 characters long.")
    if subject is not None and not 0 < len(subject) <= 255:
        raise InvalidInput("A subject is 1 to 255 characters long.")
    same = select(Person.id).where(Person.organization_id == organization_id)
    if session.scalar(same.where(Person.oidc_login == login)) is not None or (
        subject is not None and session.scalar(same.where(Person.oidc_subject == subject))
    ):
        raise Conflict("A person of this organization already signs in with this account.")
    person = Person(
        id=new_id("psn"),
        organization_id=organization_id,
        username=username,
        name=name or username,
        role=role,
        password_hash=None,
        totp_sealed=None,
        auth=OIDC,
        oidc_login=login,
        oidc_subject=subject,
        created_at=ctx.now,
    )
    session.add(person)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.PERSON_CREATE, resource_type="person", resource_id=person.id
        ),
    )
    return person


def _claim_value(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        return None
    return value.strip().lower()


def _check_domain(config: ProviderConfig, claims: Mapping[str, Any]) -> None:
    if not config.allowed_domains:
        return
    email = _claim_value(claims, "email")
    domain = email.rpartition("@")[2] if email and "@" in email else None
    if claims.get("email_verified") is not True or domain not in config.allowed_domains:
        raise SsoFailed(
            "domain",
            "Your account at the identity provider is not in a domain this organization allows.",
        )


def match_person(session: Session, config: ProviderConfig, claims: Mapping[str, Any]) -> Person:
    """The person of the provider's organization whom verified ID token ``claims`` name,
    pinning the ``sub`` at their first sign-in (flushes then); :class:`SsoFailed` otherwise."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise SsoFailed("claims", "The identity provider's answer names no account.")
    _check_domain(config, claims)
    in_org = select(Person).where(
        Person.organization_id == config.organization_id, Person.auth == OIDC
    )
    person = session.scalar(in_org.where(Person.oidc_subject == subject))
    if person is None:
        login = _claim_value(claims, config.claim)
        if config.claim == "email" and claims.get("email_verified") is not True:
            login = None
        found = None if login is None else session.scalar(in_org.where(Person.oidc_login == login))
        if found is None:
            raise SsoFailed(
                "unknown",
                "No one is set up to sign in with this account; ask your administrator.",
            )
        if found.oidc_subject is not None:
            raise SsoFailed(
                "subject",
                "This account is not the one this person signed in with before; "
                "ask your administrator.",
            )
        person = found
    if person.disabled_at is not None:
        raise SsoFailed("disabled", "This person is disabled; ask your administrator.")
    if person.oidc_subject is None:
        person.oidc_subject = subject
        session.flush()
    return person
