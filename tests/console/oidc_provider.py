"""A fake OpenID provider for the tests: discovery, a JWK set, an authorization endpoint the
test drives by hand (it "signs in" whichever account the test says) and a token endpoint that
checks the client, the redirect URI, the PKCE verifier and that a code is used once, and issues
ID tokens signed with a joserfc RSA key. Reached through an httpx.MockTransport, which the
console's relying party uses when ``app.state.oidc_transport`` is set."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

KID = "idp-key-1"
_KEYS: dict[str, RSAKey] = {}


def rsa_key(name: str) -> RSAKey:
    """An RSA key per name, made once per test run (2048-bit generation is not free)."""
    if name not in _KEYS:
        _KEYS[name] = RSAKey.generate_key(
            2048, parameters={"kid": KID, "use": "sig", "alg": "RS256"}
        )
    return _KEYS[name]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class FakeProvider:
    issuer: str
    clock: Callable[[], datetime]
    client_id: str = "backbone-console"
    client_secret: str = "provider-issued-secret-0123456789abcdef"
    key: RSAKey = field(default_factory=lambda: rsa_key("provider"))
    # What the next ID token says, over the defaults; and how it is signed.
    overrides: dict[str, Any] = field(default_factory=dict)
    sign: Callable[[dict[str, Any]], str] | None = None
    down: bool = False
    discovery_issuer: str | None = None
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return urlsplit(self.issuer).hostname or ""

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("provider down", request=request)
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": self.discovery_issuer or self.issuer,
                    "authorization_endpoint": self.issuer + "/authorize",
                    "token_endpoint": self.issuer + "/token",
                    "jwks_uri": self.issuer + "/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                },
            )
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [self.key.as_dict(private=False)]})
        if path == "/token" and request.method == "POST":
            return self._token(request)
        return httpx.Response(404)

    def authorize(self, location: str, account: dict[str, Any]) -> str:
        """The provider's sign-in page, the person having signed in as ``account``: the path
        and query the browser is sent back to."""
        url = urlsplit(location)
        assert url.hostname == self.host and url.path == "/authorize"
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert query["response_type"] == "code" and query["client_id"] == self.client_id
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert "openid" in query["scope"].split()
        assert query["nonce"] and query["state"]
        code = secrets.token_urlsafe(24)
        self.codes[code] = {**query, "account": account}
        back = urlsplit(query["redirect_uri"])
        return f"{back.path}?{urlencode({'code': code, 'state': query['state']})}"

    def _error(self, error: str) -> httpx.Response:
        return httpx.Response(400, json={"error": error})

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.token_requests.append(form)
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if (client_id, secret) != (self.client_id, self.client_secret):
            return httpx.Response(401, json={"error": "invalid_client"})
        grant = self.codes.pop(form.get("code", ""), None)  # a code is good once
        if grant is None or form.get("grant_type") != "authorization_code":
            return self._error("invalid_grant")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return self._error("invalid_grant")
        verifier = form.get("code_verifier", "")
        if b64(hashlib.sha256(verifier.encode()).digest()) != grant["code_challenge"]:
            return self._error("invalid_grant")
        now = int(self.clock().timestamp())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            **grant["account"],
            **self.overrides,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        id_token = self.sign(claims) if self.sign else self.signed(claims)
        return httpx.Response(
            200,
            json={
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
            },
        )

    def signed(self, claims: dict[str, Any], key: RSAKey | None = None) -> str:
        return jwt.encode({"alg": "RS256", "kid": KID}, claims, key or self.key)


def unsigned(claims: dict[str, Any]) -> str:
    """An ID token with ``alg: none``."""
    header = b64(json.dumps({"alg": "none", "kid": KID}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


class Providers:
    """Several fake providers behind one transport, told apart by host."""

    def __init__(self, *providers: FakeProvider) -> None:
        self.by_host = {p.host: p for p in providers}

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: self.by_host[request.url.host].handle(request))
