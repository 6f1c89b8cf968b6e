"""Resource-side access token verification.

Tokens are checked with Authlib's RFC 9068 validator, with two things pinned that the generic
validator leaves open: the algorithm must be ES256 (no ``none``, no HS256 signed with a public key)
and ``typ`` must be ``at+jwt``. Scopes are all-of: Authlib treats a list of scopes as any-of, so
the required set is passed as one space-separated string, which it checks as a superset.
Revocation and client disablement are read from the database on every request so that they take
effect at once, across all workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.errors import AuthenticationFailed, InsufficientScope
from identity.models import Client, Organization, RevokedToken
from policy.model import Principal

_ALG = "ES256"


class _Validator(JWTBearerTokenValidator):  # type: ignore[misc]
    def __init__(self, issuer: str, audience: str, keys: Callable[[str | None], KeySet]) -> None:
        super().__init__(issuer=issuer, resource_server=audience)
        self._keys = keys
        self._kid: str | None = None

    def get_jwks(self) -> KeySet:
        return self._keys(self._kid)

    def authenticate_token(self, token_string: str) -> Any:
        try:
            header = jws.extract_compact(token_string.encode()).protected
        except (JoseError, ValueError) as exc:
            raise AuthenticationFailed("The access token is malformed.") from exc
        if header.get("alg") != _ALG:
            raise AuthenticationFailed("The access token is not signed with an accepted algorithm.")
        if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
            raise AuthenticationFailed("The token is not a JWT access token (typ at+jwt).")
        self._kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        return super().authenticate_token(token_string)


class KeyCache:
    """Caches the published verification keys; refreshes on expiry or on an unknown ``kid``."""

    def __init__(self, load: Callable[[], dict[str, Any]], ttl_seconds: float = 60.0) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._loaded_at = 0.0

    def invalidate(self) -> None:
        with self._lock:
            self._keys = None

    def __call__(self, kid: str | None) -> KeySet:
        now = time.monotonic()
        keys = self._keys
        stale = keys is None or now - self._loaded_at > self._ttl
        unknown = kid is not None and kid not in self._kids and now - self._loaded_at > 1.0
        if stale or unknown:
            with self._lock:
                jwks = self._load()
                self._keys = KeySet.import_key_set(jwks) if jwks.get("keys") else KeySet([])
                self._kids = frozenset(str(k.get("kid")) for k in jwks.get("keys", []))
                self._loaded_at = now
                keys = self._keys
        assert keys is not None
        return keys


class TokenVerifier:
    def __init__(self, issuer: str, audience: str, keys: KeyCache) -> None:
        self._issuer = issuer
        self._audience = audience
        self._keys = keys

    def claims(self, token: str) -> dict[str, Any]:
        """Verify signature, algorithm, type, issuer, audience and lifetime; return the claims."""
        validator = _Validator(self._issuer, self._audience, self._keys)
        try:
            claims = validator.authenticate_token(token)
            validator.validate_token(claims, None, None)
        except OAuth2Error as exc:
            raise AuthenticationFailed("The access token is invalid or has expired.") from exc
        except (JoseError, ValueError, KeyError) as exc:
            raise AuthenticationFailed("The access token is invalid or has expired.") from exc
        return dict(claims)

    def principal(self, session: Session, token: str, required: frozenset[str]) -> Principal:
        """Authenticate ``token`` and check that it carries *all* of ``required``."""
        claims = self.claims(token)
        client_id, jti = claims.get("client_id"), claims.get("jti")
        if not isinstance(client_id, str) or not isinstance(jti, str):
            raise AuthenticationFailed("The access token is invalid or has expired.")
        row = session.execute(
            select(
                Client.disabled_at,
                Client.organization_id,
                Organization.kind,
                select(RevokedToken.jti).where(RevokedToken.jti == jti).exists(),
            )
            .join(Organization, Organization.id == Client.organization_id)
            .where(Client.id == client_id)
        ).first()
        if row is None or row[0] is not None:
            raise AuthenticationFailed("The client of this access token is disabled.")
        if row[3]:
            raise AuthenticationFailed("The access token has been revoked.")
        scopes = frozenset(str(claims.get("scope") or "").split())
        # All-of, not Authlib's any-of: one string means "every one of these".
        if validator_scope_insufficient(scopes, required):
            raise InsufficientScope(required)
        return Principal(
            client_id=client_id,
            organization_id=str(row[1]),
            organization_kind=str(row[2]),
            scopes=scopes,
            token_id=jti,
        )


def validator_scope_insufficient(scopes: frozenset[str], required: frozenset[str]) -> bool:
    if not required:
        return False
    return bool(
        _Validator.scope_insufficient(" ".join(sorted(scopes)), [" ".join(sorted(required))])
    )
