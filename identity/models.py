"""Tables of organizations, clients, token signing keys, revoked tokens and used assertions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, JSONType, UTCDateTime


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # partner | backbone | auditor
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    clients: Mapped[list[Client]] = relationship(back_populates="organization")


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[str] = mapped_column(Text)  # space-separated, as in OAuth
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str | None] = mapped_column(String(255))
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    organization: Mapped[Organization] = relationship(back_populates="clients")

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


class SigningKey(Base):
    """An ES256 key that signs access tokens. The private half is sealed under the master key."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONType)
    private_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # After retirement the key signs nothing but stays published until tokens it signed expire.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    publish_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuthChange(Base):
    """A feed of changes that invalidate live tokens (a revocation, a disabled client).

    Every API worker keeps an in-memory view of revoked token ids and client status and follows
    this feed, so that checking a token needs no database round trip.
    """

    __tablename__ = "auth_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # revoke | disable
    subject: Mapped[str] = mapped_column(String(128))  # a token id or a client id
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class UsedClientAssertion(Base):
    """``jti`` values of RFC 7523 client assertions already seen, kept until they expire."""

    __tablename__ = "used_client_assertions"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_used_client_assertions_expires_at", "expires_at"),)


class Person(Base):
    """A person of an organization who signs in to the console. Their role is one of
    :data:`identity.scopes.ROLES`: a person holds exactly the scopes a client of that role holds.

    The password is an argon2id hash; the TOTP secret is sealed under a purpose key of the master
    key (``totp/v1``), bound to the person's id."""

    __tablename__ = "people"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    # None for a person who signs in through their organization's identity provider.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The last TOTP time step accepted: a code is good once (RFC 6238 section 5.2).
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # local (password and TOTP) | oidc (the organization's identity provider, identity.sso)
    auth: Mapped[str] = mapped_column(String(8), default="local", server_default="local")
    # oidc: the value the provider's configured claim names them by at first sign-in, and the
    # provider's ``sub`` then pinned: later sign-ins must present that same ``sub``.
    oidc_login: Mapped[str | None] = mapped_column(String(255))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))

    organization: Mapped[Organization] = relationship()

    __table_args__ = (UniqueConstraint("organization_id", "oidc_subject"),)


class IdentityProvider(Base):
    """An organization's OpenID Connect provider, through which its people sign in.

    The client secret is sealed under the master key's ``oidc-client-secret/v1`` purpose key,
    bound to the organization's id."""

    __tablename__ = "identity_providers"

    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    issuer: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[str] = mapped_column(String(500))  # space-separated, with openid
    claim: Mapped[str] = mapped_column(String(64))  # names the person: preferred_username | email
    allowed_domains: Mapped[str | None] = mapped_column(Text)  # space-separated; None: any
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PersonSession(Base):
    """A signed-in session, kept on the server. The browser holds a random 256-bit token; only
    its SHA-256 is stored, so a copy of this table signs no one in."""

    __tablename__ = "person_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the token, hex
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    idle_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # The synchronizer token every state-changing form of this session carries.
    csrf_secret: Mapped[str] = mapped_column(String(64))


class Passkey(Base):
    """A WebAuthn credential (a passkey) a person signs in with instead of their TOTP code.

    ``user_handle`` is the random WebAuthn user id of the person, the same on each of their
    passkeys (never their Backbone id, which an authenticator would keep and show)."""

    __tablename__ = "passkeys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(Integer)
    transports: Mapped[list[str]] = mapped_column(JSONType)
    aaguid: Mapped[str] = mapped_column(String(36))
    user_handle: Mapped[bytes] = mapped_column(LargeBinary)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PasskeyChallenge(Base):
    """A WebAuthn challenge waiting for its answer, single use and short-lived. ``binding`` is
    the SHA-256 of what it belongs to: a signed-in session (adding a passkey) or a pending
    sign-in (signing in with one)."""

    __tablename__ = "passkey_challenges"

    binding: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)  # register | sign_in
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    challenge: Mapped[bytes] = mapped_column(LargeBinary)
    # The user handle a new passkey will carry (adding one); None when signing in.
    user_handle: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PendingSignIn(Base):
    """A person whose password was right and whose second factor (TOTP code or passkey) is still
    to come. The browser holds a random token in a short-lived HttpOnly cookie; only its SHA-256
    is stored. It is no session: it opens no page but the second factor's."""

    __tablename__ = "pending_sign_ins"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the token, hex
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
