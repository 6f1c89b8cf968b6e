"""The console as an OpenID Connect relying party of an organization's identity provider.

Authorization code flow with PKCE (S256), through Authlib's httpx client (synchronous: call it
from plain ``def`` routes). The provider's discovery document and JWK set are cached for
:data:`CACHE_SECONDS`; a token signed by a key the cached set does not hold fetches the set
again, once, so that a provider's key rotation needs no restart.

The ID token is verified with joserfc against the provider's JWK set: an asymmetric algorithm
of :data:`ALGORITHMS` only (never ``none``, never HS*, whose key would be the client secret the
provider's every client knows its own of), then ``iss``, ``aud`` (and ``azp`` when several
audiences), ``exp``, ``iat``, ``sub`` and the ``nonce`` of this very sign-in.

What a sign-in in progress must remember (``state``, ``nonce``, the PKCE verifier, where to go
afterwards) is a :class:`PendingSignIn`, which the console keeps in a short-lived cookie sealed
(AES-GCM) under the master key's ``oidc-sign-in/v1`` purpose key: the browser that started the
sign-in is the only one that can finish it, and cannot read or alter what it carries.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import OAuth2Client
from cryptography.exceptions import InvalidTag
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from core.keys import MasterKey, seal, unseal
from identity.identity_providers import ProviderConfig, SsoFailed

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
CACHE_SECONDS = 600.0
PENDING_SECONDS = 600
CLOCK_SKEW_SECONDS = 60
TIMEOUT_SECONDS = 10.0
PENDING_PURPOSE = "oidc-sign-in/v1"
_PENDING_AD = b"oidc-sign-in"
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _provider_down() -> SsoFailed:
    return SsoFailed(
        "provider",
        "Your organization's identity provider could not be reached or answered wrongly; "
        "try again later.",
    )


def _unverified() -> SsoFailed:
    return SsoFailed("token", "The identity provider's answer could not be verified; start again.")


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in sent to the provider and not yet back."""

    organization_id: str
    state: str
    nonce: str
    code_verifier: str
    next_path: str
    expires_at: int  # seconds since the epoch


def seal_pending(master: MasterKey, pending: PendingSignIn) -> str:
    """``pending`` as a cookie value: sealed, so the browser can neither read nor change it."""
    sealed = seal(master.derive(PENDING_PURPOSE), json.dumps(asdict(pending)).encode(), _PENDING_AD)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def open_pending(master: MasterKey, value: str, now: datetime) -> PendingSignIn | None:
    """The sign-in a cookie value carries; None if it is not one this service sealed, or it has
    expired."""
    if not value or len(value) > 4096:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(unseal(master.derive(PENDING_PURPOSE), raw, _PENDING_AD))
        pending = PendingSignIn(**data)
    except (binascii.Error, ValueError, TypeError, InvalidTag):
        return None
    return pending if now.timestamp() < pending.expires_at else None


def _http_ok(url: Any, issuer: str) -> bool:
    """An endpoint of the provider: https, or http on this machine when the issuer is too."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return urlsplit(issuer).scheme == "http" and parts.hostname in _LOCAL_HOSTS


class RelyingParty:
    """The console's side of the flow, one per application. ``transport`` is the httpx transport
    every request to a provider goes through (None: the network; the tests give a fake
    provider's)."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._metadata: dict[str, tuple[float, dict[str, Any]]] = {}
        self._jwks: dict[str, tuple[float, KeySet]] = {}

    def _client(self, config: ProviderConfig, redirect_uri: str) -> OAuth2Client:
        return OAuth2Client(
            client_id=config.client_id,
            client_secret=config.client_secret,
            token_endpoint_auth_method=config.token_endpoint_auth_method,
            scope=config.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            transport=self.transport,
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        )

    def _get_json(self, url: str) -> dict[str, Any]:
        with httpx.Client(
            transport=self.transport, timeout=TIMEOUT_SECONDS, follow_redirects=False
        ) as client:
            response = client.get(url, headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise _provider_down()
        body = response.json()
        if not isinstance(body, dict):
            raise _provider_down()
        return body

    def metadata(self, issuer: str) -> dict[str, Any]:
        """The provider's discovery document (OpenID Connect Discovery 1.0), cached; its
        ``issuer`` must be the configured one exactly, and its endpoints https."""
        now = self._monotonic()
        with self._lock:
            cached = self._metadata.get(issuer)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            found = self._get_json(issuer + "/.well-known/openid-configuration")
        except (httpx.HTTPError, ValueError):
            raise _provider_down() from None
        endpoints = ("authorization_endpoint", "token_endpoint", "jwks_uri")
        if found.get("issuer") != issuer or not all(
            _http_ok(found.get(name), issuer) for name in endpoints
        ):
            raise _provider_down()
        with self._lock:
            self._metadata[issuer] = (now + CACHE_SECONDS, found)
        return found

    def _keys(self, jwks_uri: str, *, fresh: bool) -> KeySet:
        now = self._monotonic()
        with self._lock:
            cached = self._jwks.get(jwks_uri)
        if cached is not None and cached[0] > now and not fresh:
            return cached[1]
        try:
            keys = KeySet.import_key_set(self._get_json(jwks_uri))  # type: ignore[arg-type]
        except (httpx.HTTPError, ValueError, JoseError):
            raise _provider_down() from None
        with self._lock:
            self._jwks[jwks_uri] = (now + CACHE_SECONDS, keys)
        return keys

    def begin(
        self, config: ProviderConfig, redirect_uri: str, next_path: str, now: datetime
    ) -> tuple[str, PendingSignIn]:
        """Where to send the browser (the provider's authorization endpoint, with a fresh
        ``state``, ``nonce`` and PKCE challenge), and what to remember until it comes back."""
        endpoint = self.metadata(config.issuer)["authorization_endpoint"]
        pending = PendingSignIn(
            organization_id=config.organization_id,
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(48),
            next_path=next_path,
            expires_at=int(now.timestamp()) + PENDING_SECONDS,
        )
        with self._client(config, redirect_uri) as client:
            url, _ = client.create_authorization_url(
                endpoint,
                state=pending.state,
                code_verifier=pending.code_verifier,
                nonce=pending.nonce,
            )
        return str(url), pending

    def finish(
        self,
        config: ProviderConfig,
        pending: PendingSignIn,
        code: str,
        redirect_uri: str,
        now: datetime,
    ) -> dict[str, Any]:
        """Exchange ``code`` (with the PKCE verifier) for tokens, and return the ID token's
        claims once verified; :class:`SsoFailed` otherwise."""
        metadata = self.metadata(config.issuer)
        try:
            with self._client(config, redirect_uri) as client:
                token = client.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=pending.code_verifier,
                )
        except AuthlibBaseError:
            # The provider refused the code (used already, expired, not this client's...).
            raise _unverified() from None
        except (httpx.HTTPError, ValueError):
            raise _provider_down() from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or len(id_token) > 16384:
            raise _unverified()
        return self.verify_id_token(config, metadata["jwks_uri"], id_token, pending.nonce, now)

    def verify_id_token(
        self, config: ProviderConfig, jwks_uri: str, id_token: str, nonce: str, now: datetime
    ) -> dict[str, Any]:
        """The claims of ``id_token`` once its signature (by a key of the provider's JWK set,
        with an allowed algorithm) and its claims check out; :class:`SsoFailed` otherwise."""
        decoded = None
        for fresh in (False, True):
            keys = self._keys(jwks_uri, fresh=fresh)
            try:
                decoded = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
                break
            except (JoseError, ValueError):
                continue
        if decoded is None:
            raise _unverified()
        claims = dict(decoded.claims)
        registry = jwt.JWTClaimsRegistry(
            now=int(now.timestamp()),
            leeway=CLOCK_SKEW_SECONDS,
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError:
            raise _unverified() from None
        audience = claims["aud"]
        if (
            isinstance(audience, list)
            and len(audience) > 1
            and (claims.get("azp") != config.client_id)
        ):
            raise _unverified()
        return claims
