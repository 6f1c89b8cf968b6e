"""Resource-side access token verification.

Tokens are checked with Authlib's RFC 9068 validator, with two things pinned that the generic
validator leaves open: the algorithm must be ES256 (no ``none``, no HS256 signed with a public key)
and ``typ`` must be ``at+jwt``. Scopes are all-of: Authlib treats a list of scopes as any-of, so
the required set is passed as one space-separated string, which it checks as a superset.
Revocation and client disablement are checked on every request against the in-memory
:mod:`identity.auth_state`, which follows a change feed in the database.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from identity.errors import AuthenticationFailed, InsufficientScope
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


class VerificationKeys:
    """Caches the published verification keys; refreshes on expiry or on an unknown ``kid``."""

    def __init__(self, load: Callable[[], dict[str, Any]], ttl_seconds: float = 60.0) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._loaded_at = 0.0

    @property
    def kids(self) -> frozenset[str]:
        return self._kids

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
                self._keys = (
                    KeySet.import_key_set(cast(Any, jwks)) if jwks.get("keys") else KeySet([])
                )
                self._kids = frozenset(str(k.get("kid")) for k in jwks.get("keys", []))
                self._loaded_at = now
                keys = self._keys
        assert keys is not None
        return keys


class TokenVerifier:
    """Verifies access tokens. Verified claims are cached by the exact token string until the
    token expires: a client reuses its token for minutes and the ES256 check need not be
    repeated. Revocation and client status are checked separately, on every request, against
    :class:`identity.auth_state.AuthState`."""

    def __init__(
        self, issuer: str, audience: str, keys: VerificationKeys, cache_size: int = 10_000
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._keys = keys
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_keys: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def claims(self, token: str) -> dict[str, Any]:
        """Verify signature, algorithm, type, issuer, audience and lifetime; return the claims."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        claims = self._verify(token)
        with self._lock:
            self._cache[token] = claims
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return claims

    def _cached(self, token: str) -> dict[str, Any] | None:
        with self._lock:
            if self._keys.kids != self._cache_keys:
                # The published key set changed (rotation or withdrawal of a key): start over.
                self._cache.clear()
                self._cache_keys = self._keys.kids
                return None
            claims = self._cache.get(token)
            if claims is None:
                return None
            if float(claims.get("exp", 0)) <= time.time():
                del self._cache[token]
                return None
            self._cache.move_to_end(token)
            return claims

    def _verify(self, token: str) -> dict[str, Any]:
        validator = _Validator(self._issuer, self._audience, self._keys)
        try:
            claims = validator.authenticate_token(token)
            validator.validate_token(claims, None, None)
        except OAuth2Error as exc:
            raise AuthenticationFailed("The access token is invalid or has expired.") from exc
        except (JoseError, ValueError, KeyError) as exc:
            raise AuthenticationFailed("The access token is invalid or has expired.") from exc
        return dict(claims)

    def cached(self, token: str) -> dict[str, Any] | None:
        """The verified claims of ``token`` if it was verified before and has not expired."""
        return self._cached(token)


def require_scopes(principal: Principal, required: frozenset[str]) -> None:
    """Raise :class:`InsufficientScope` unless the token carries *all* of ``required``.

    Authlib treats a list of scopes as any-of; one space-separated string is all-of.
    """
    if required and _Validator.scope_insufficient(
        " ".join(sorted(principal.scopes)), [" ".join(sorted(required))]
    ):
        raise InsufficientScope(required)
