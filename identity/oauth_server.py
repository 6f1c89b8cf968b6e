"""The OAuth 2.0 authorization server, framework-free, on Authlib's core.

``api/oauth.py`` turns a Starlette request into an :class:`HttpRequest` and an
:class:`OAuthResponse` back into a response; nothing here knows about HTTP frameworks. A server
is built per request around that request's database session, which keeps it thread-safe and lets
Authlib's synchronous callbacks query the database directly.

Supported: the ``client_credentials`` grant; client authentication by ``client_secret_basic``,
``client_secret_post`` and ``private_key_jwt`` (RFC 7523, with a ``jti`` replay cache); RFC 9068
JWT access tokens signed with ES256; revocation (RFC 7009) as a ``jti`` deny list; introspection
(RFC 7662); metadata (RFC 8414).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from authlib.oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from identity.auth_state import record_change
from identity.models import Client, RevokedToken, UsedClientAssertion
from identity.scopes import SCOPES, parse_scope
from identity.secret_hash import verify_secret

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
GRANT_TYPES = ("client_credentials",)
_SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})


@dataclass(frozen=True)
class HttpRequest:
    """What the OAuth server needs from an HTTP request, independent of any framework."""

    method: str
    url: str
    headers: Mapping[str, str]
    form: Mapping[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class OAuthResponse:
    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]]
    # The client that authenticated, if one did (set by :func:`identity.service.oauth_endpoint`).
    client_id: str | None = None


# Called with the id of a client that has just authenticated; returns None to admit the request,
# or the seconds the client must wait (its own allowance is spent).
Admission = Callable[[str], int | None]


class SlowDown(OAuth2Error):  # type: ignore[misc]
    """429 in RFC 6749 form: the authenticated client has used up its own allowance."""

    error = "slow_down"
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            description=f"Too many requests for this client; retry after {retry_after} second(s)."
        )
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


@dataclass(frozen=True)
class ServerConfig:
    issuer: str
    audience: str
    token_ttl: timedelta
    assertion_max_lifetime: timedelta

    @property
    def token_endpoint(self) -> str:
        return self.issuer.rstrip("/") + "/oauth/token"


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, form: Mapping[str, list[str]]) -> None:
        self._form = form

    @property
    def data(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._form.items() if v}

    @property
    def datalist(self) -> Any:
        return dict(self._form)


class _Headers(dict[str, str]):
    """HTTP headers are case-insensitive; Authlib looks them up as ``Authorization``."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in headers.items()})

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, http: HttpRequest) -> None:
        super().__init__(method=http.method, uri=http.url, headers=_Headers(http.headers))
        self.payload = _Payload(http.form)
        self._form = {k: v[0] for k, v in http.form.items() if v}

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class OAuthClient(ClientMixin):  # type: ignore[misc]
    """Authlib's view of a :class:`identity.models.Client`."""

    def __init__(self, row: Client) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        allowed = self.row.scope_set
        if not scope:
            return " ".join(sorted(allowed))
        requested = parse_scope(scope)
        # A request beyond the client's grant is refused, not silently narrowed: the client
        # must learn that it asked for something it does not have (RFC 6749 section 5.2).
        if not requested <= allowed:
            return None
        return " ".join(sorted(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self.row.secret_hash is not None and verify_secret(
            client_secret, self.row.secret_hash
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        registered = self.row.token_endpoint_auth_method
        # A secret may be presented in the Authorization header or in the form; a client
        # registered for private_key_jwt has no secret and must sign an assertion.
        if registered in _SECRET_METHODS:
            return method in _SECRET_METHODS
        return method == registered

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES


class _TokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    def __init__(self, config: ServerConfig, key: ECKey) -> None:
        ttl = int(config.token_ttl.total_seconds())
        super().__init__(
            issuer=config.issuer, alg="ES256", expires_generator=lambda client, grant: ttl
        )
        self._key = key
        self._audience = config.audience

    def get_jwks(self) -> KeySet:
        # A key set (of one) makes joserfc put the key's ``kid`` in the JWT header.
        return KeySet([self._key])

    def get_audiences(self, client: OAuthClient, user: Any, scope: str) -> str:
        return self._audience

    def get_extra_claims(
        self, client: OAuthClient, grant_type: str, user: Any, scope: str
    ) -> dict[str, Any]:
        return {"org": client.row.organization_id}


class _PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client authentication with a registered public JWK set and a replay cache."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, session: Session, config: ServerConfig, request_url: str) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self._session = session
        self._config = config
        # The token endpoint as this request reached it (behind a TLS proxy, with forwarded
        # headers honoured, this is the public URL) is an audience too (RFC 7523 section 3).
        self._request_url = request_url.split("?", 1)[0]

    def get_audiences(self) -> list[str]:
        return [self._config.token_endpoint, self._config.issuer, self._request_url]

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        if not client.row.jwks:
            raise InvalidClientError(description="The client has no registered public keys.")
        return KeySet.import_key_set(cast(Any, client.row.jwks))

    def verify_claims(self, claims: Any) -> None:
        max_life = self._config.assertion_max_lifetime.total_seconds()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise InvalidClientError(description="The assertion must carry 'iat' and 'exp'.")
        if exp - iat > max_life or exp - time.time() > max_life + self.leeway:
            raise InvalidClientError(description="The assertion lives longer than allowed.")
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        if not isinstance(jti, str) or not 0 < len(jti) <= 255:
            return False
        row = UsedClientAssertion(
            client_id=str(claims["sub"]),
            jti=jti,
            expires_at=datetime.fromtimestamp(float(claims["exp"]) + self.leeway, UTC),
        )
        try:
            with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError:
            return False
        return True


@dataclass
class _TokenRecord:
    """A decoded access token, as revocation and introspection see it."""

    claims: dict[str, Any]
    expired: bool = False
    revoked: bool = False

    def check_client(self, client: OAuthClient) -> bool:
        return bool(self.claims.get("client_id") == client.get_client_id())

    def get_scope(self) -> str:
        return str(self.claims.get("scope", ""))

    def is_expired(self) -> bool:
        return self.expired

    def is_revoked(self) -> bool:
        return self.revoked


def _decode_own_token(token: str, keys: KeySet, issuer: str) -> _TokenRecord | None:
    try:
        decoded = jwt.decode(token, keys, algorithms=["ES256"])
    except (JoseError, ValueError):
        return None
    if decoded.header.get("typ") != "at+jwt" or decoded.claims.get("iss") != issuer:
        return None
    return _TokenRecord(dict(decoded.claims))


class _Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)
    SUPPORTED_TOKEN_TYPES = ("access_token",)

    def __init__(self, server: BackboneAuthorizationServer) -> None:
        super().__init__(server=server)
        self._backbone = server

    def query_token(self, token_string: str, token_type_hint: str | None) -> _TokenRecord | None:
        return _decode_own_token(
            token_string, self._backbone.public_keys, self._backbone.config.issuer
        )

    def revoke_token(self, token: _TokenRecord, request: Any) -> None:
        jti, exp = token.claims.get("jti"), token.claims.get("exp")
        if not isinstance(jti, str) or not isinstance(exp, int | float):
            return
        session = self._backbone.session
        if session.get(RevokedToken, jti) is None:
            session.add(
                RevokedToken(
                    jti=jti,
                    client_id=str(token.claims.get("client_id")),
                    expires_at=datetime.fromtimestamp(float(exp), UTC),
                    revoked_at=self._backbone.now,
                )
            )
            record_change(
                session, "revoke", jti, self._backbone.now, datetime.fromtimestamp(float(exp), UTC)
            )
            session.flush()


class _Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)
    SUPPORTED_TOKEN_TYPES = ("access_token",)

    def __init__(self, server: BackboneAuthorizationServer) -> None:
        super().__init__(server=server)
        self._backbone = server

    def query_token(self, token_string: str, token_type_hint: str | None) -> _TokenRecord | None:
        token = _decode_own_token(
            token_string, self._backbone.public_keys, self._backbone.config.issuer
        )
        if token is None:
            return None
        claims, session = token.claims, self._backbone.session
        token.expired = float(claims.get("exp", 0)) <= self._backbone.now.timestamp()
        client = session.get(Client, str(claims.get("client_id")))
        token.revoked = (
            session.get(RevokedToken, str(claims.get("jti"))) is not None
            or client is None
            or client.disabled_at is not None
        )
        return token

    def check_permission(self, token: _TokenRecord, client: OAuthClient, request: Any) -> bool:
        # A client may introspect its own tokens; administrators may introspect any.
        return token.check_client(client) or "admin" in client.row.scope_set

    def introspect_token(self, token: _TokenRecord) -> dict[str, Any]:
        fields = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "org")
        return {
            "active": True,
            "token_type": "Bearer",
            **{k: token.claims[k] for k in fields if k in token.claims},
        }


class _ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)


class BackboneAuthorizationServer(_AuthorizationServer):  # type: ignore[misc]
    """One request's authorization server. Build with :func:`build_server`."""

    def __init__(
        self,
        session: Session,
        config: ServerConfig,
        signing_key: ECKey,
        public_keys: KeySet,
        now: datetime,
        request_url: str,
        admit: Admission | None = None,
    ) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.admit = admit
        self.session = session
        self.config = config
        self.public_keys = public_keys
        self.now = now
        self.register_token_generator("default", _TokenGenerator(config, signing_key))
        self.register_client_auth_method(
            "private_key_jwt", _PrivateKeyJWT(session, config, request_url)
        )
        self.register_grant(_ClientCredentials)
        self.register_endpoint(_Revocation(self))
        self.register_endpoint(_Introspection(self))
        self.authenticated_client: Client | None = None

    def authenticate_client(self, request: Any, methods: Any, endpoint: str = "token") -> Any:
        client = super().authenticate_client(request, methods, endpoint)
        if client is not None and self.admit is not None:
            retry_after = self.admit(client.get_client_id())
            if retry_after is not None:
                self.authenticated_client = client.row
                raise SlowDown(retry_after)
        return client

    def query_client(self, client_id: str) -> OAuthClient | None:
        if not isinstance(client_id, str) or len(client_id) > 64:
            return None
        row = self.session.get(Client, client_id)
        if row is None or row.disabled_at is not None:
            return None
        return OAuthClient(row)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        # Access tokens are self-contained JWTs; only revocations are stored.
        client = getattr(request, "client", None)
        self.authenticated_client = client.row if client is not None else None

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        client = kwargs.get("client")
        if isinstance(client, OAuthClient):
            self.authenticated_client = client.row

    def create_oauth2_request(self, request: HttpRequest) -> OAuth2Request:
        return _Request(request)

    def create_json_request(self, request: HttpRequest) -> Any:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(self, status: int, body: Any, headers: Any) -> OAuthResponse:
        return OAuthResponse(status=status, body=dict(body or {}), headers=list(headers or []))


def metadata(config: ServerConfig) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    base = config.issuer.rstrip("/")
    return {
        "issuer": config.issuer,
        "token_endpoint": config.token_endpoint,
        "jwks_uri": f"{base}/oauth/jwks.json",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "scopes_supported": list(SCOPES),
        "response_types_supported": [],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "PS256", "EdDSA"],
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "service_documentation": f"{base}/docs",
    }
