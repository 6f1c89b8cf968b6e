"""The OAuth 2.0 authorization server and resource-side access control."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from identity.signing_keys import current_signing_key, load_private_key
from tests.conftest import MASTER


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(api, client_id: str = "district-sis") -> dict[str, Any]:
    token = api.token(client_id)
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def _sign(session, header: dict[str, Any], claims: dict[str, Any]) -> str:
    key = load_private_key(current_signing_key(session), MASTER)
    return jwt.encode({"kid": key.kid, **header}, claims, key.key)


def _call(client, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get("/v1/submissions", headers=headers)


def _assert_401(r) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith('Bearer realm="backbone"')
    assert r.json()["type"] == "/problems/invalid-token"


class _ShortPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's client auth with the 5-minute assertion lifetime the server requires."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        return private_key_jwt_sign(
            auth.client_secret,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg="ES256",
            expires_in=300,
        )


# --- Off-the-shelf clients ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_gets_a_token_by_secret_and_calls_a_protected_route(
    live_server, demo_credentials, method
):
    cred = demo_credentials["district-sis"]
    with OAuth2Client(
        cred["client_id"], cred["client_secret"], token_endpoint_auth_method=method
    ) as oauth:
        token = oauth.fetch_token(f"{live_server.url}/oauth/token", grant_type="client_credentials")
        assert token["token_type"].lower() == "bearer"
        assert token["expires_in"] == 300
        assert set(token["scope"].split()) == {"records:write", "submissions:read"}
        r = oauth.get(f"{live_server.url}/v1/submissions")
        assert r.status_code == 200, r.text


def test_authlib_client_gets_a_token_by_private_key_jwt(live_server, api):
    key = ECKey.generate_key("P-256", parameters={"kid": "partner-key-1"})
    r = api.post(
        "/v1/clients",
        as_="backbone-admin",
        json={
            "organization": "district",
            "name": "district SIS, key-based",
            "role": "partner-system",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.as_dict(private=False)]},
        },
    )
    assert r.status_code == 201, r.text
    client_id = r.json()["client_id"]
    assert r.json()["client_secret"] is None
    token_url = f"{live_server.url}/oauth/token"
    with OAuth2Client(
        client_id, key, token_endpoint_auth_method=_ShortPrivateKeyJWT(token_url)
    ) as oauth:
        token = oauth.fetch_token(token_url, grant_type="client_credentials")
        assert token["access_token"]
        assert oauth.get(f"{live_server.url}/v1/submissions").status_code == 200


def test_access_token_is_an_rfc9068_jwt(api, client):
    token = api.token("district-sis")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    claims = _claims(api)
    assert {"iss", "aud", "sub", "client_id", "scope", "jti", "exp", "iat"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 300
    jwks = client.get("/oauth/jwks.json").json()
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    assert all("d" not in k for k in jwks["keys"])
    meta = client.get("/.well-known/oauth-authorization-server").json()
    assert meta["token_endpoint"].endswith("/oauth/token")
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]


# --- Negative cases, each with its exact status -------------------------------------------


def test_no_token(client):
    r = _call(client, None)
    _assert_401(r)
    assert r.headers["www-authenticate"] == 'Bearer realm="backbone"'


def test_wrong_secret(client):
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=("district-sis", "wrong")
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")


def test_unknown_client_by_post(client):
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"


def test_alg_none(api, client):
    claims = _claims(api)
    token = f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{_b64(claims)}."
    _assert_401(_call(client, token))


def test_hs256_signed_with_the_public_key(api, client, session):
    claims = _claims(api)
    public = client.get("/oauth/jwks.json").json()["keys"][0]
    secret = OctKey.import_key(json.dumps(public).encode())
    token = jwt.encode({"alg": "HS256", "typ": "at+jwt", "kid": public["kid"]}, claims, secret)
    _assert_401(_call(client, token))


def test_wrong_audience(api, client, session):
    claims = {**_claims(api), "aud": "some-other-api"}
    _assert_401(_call(client, _sign(session, {"alg": "ES256", "typ": "at+jwt"}, claims)))


def test_wrong_type(api, client, session):
    _assert_401(_call(client, _sign(session, {"alg": "ES256", "typ": "JWT"}, _claims(api))))


def test_expired(api, client, session):
    now = int(time.time())
    claims = {**_claims(api), "iat": now - 900, "exp": now - 600}
    _assert_401(_call(client, _sign(session, {"alg": "ES256", "typ": "at+jwt"}, claims)))


def test_tampered_signature_and_payload(api, client):
    token = api.token("district-sis")
    head, payload, sig = token.split(".")
    flipped = sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")
    _assert_401(_call(client, f"{head}.{payload}.{flipped}"))
    claims = {**_claims(api), "scope": "records:write submissions:read admin"}
    _assert_401(_call(client, f"{head}.{_b64(claims)}.{sig}"))


def test_revoked_token(api, client, demo_credentials):
    token = api.token("district-sis")
    assert _call(client, token).status_code == 200
    cred = demo_credentials["district-sis"]
    r = client.post(
        "/oauth/revoke", data={"token": token}, auth=(cred["client_id"], cred["client_secret"])
    )
    assert r.status_code == 200
    _assert_401(_call(client, token))
    r = client.post(
        "/oauth/introspect", data={"token": token}, auth=(cred["client_id"], cred["client_secret"])
    )
    assert r.json() == {"active": False}


def test_another_client_cannot_revoke_my_token(api, client, demo_credentials):
    token = api.token("district-sis")
    other = demo_credentials["health-vitals"]
    client.post(
        "/oauth/revoke", data={"token": token}, auth=(other["client_id"], other["client_secret"])
    )
    assert _call(client, token).status_code == 200


def test_introspection_of_a_live_token(api, client, demo_credentials):
    token = api.token("district-sis")
    cred = demo_credentials["district-sis"]
    body = client.post(
        "/oauth/introspect", data={"token": token}, auth=(cred["client_id"], cred["client_secret"])
    ).json()
    assert (
        body["active"] is True and body["client_id"] == "district-sis" and body["org"] == "district"
    )


def test_disabled_client_loses_live_tokens_at_once_and_gets_no_new_ones(
    api, client, demo_credentials
):
    token = api.token("district-sis")
    assert _call(client, token).status_code == 200
    r = api.post("/v1/clients/district-sis/disable", as_="backbone-admin")
    assert r.status_code == 200 and r.json()["disabled"] is True
    _assert_401(_call(client, token))
    cred = demo_credentials["district-sis"]
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_scope_beyond_the_clients_grant(client, demo_credentials):
    cred = demo_credentials["district-sis"]
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "records:write admin"},
        auth=(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "no:such:scope"},
        auth=(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_narrower_scope_is_granted_and_enforced_all_of(api, client, demo_credentials):
    cred = demo_credentials["district-sis"]
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "submissions:read"},
        auth=(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 200 and r.json()["scope"] == "submissions:read"
    token = r.json()["access_token"]
    assert _call(client, token).status_code == 200
    r = client.post(
        "/v1/datasets/kindergarten_readiness/submissions",
        content=b"x",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
    )
    assert r.status_code == 403
    assert r.json()["type"] == "/problems/insufficient-scope"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="records:write"' in r.headers["www-authenticate"]


def test_unsupported_grant_type(client, demo_credentials):
    cred = demo_credentials["district-sis"]
    r = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "a", "password": "b"},
        auth=(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def _key_client(api) -> tuple[str, ECKey]:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    r = api.post(
        "/v1/clients",
        as_="backbone-admin",
        json={
            "organization": "health",
            "name": "vitals, key-based",
            "role": "partner-system",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.as_dict(private=False)]},
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["client_id"], key


def _assertion(client_id: str, key: ECKey, audience: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 120,
        "jti": f"j-{now}-{id(overrides)}",
    }
    claims.update(overrides)
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


def _assert_token(client, assertion: str):
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )


def test_replayed_client_assertion_is_refused(api, client, settings):
    client_id, key = _key_client(api)
    assertion = _assertion(client_id, key, settings.issuer + "/oauth/token", jti="once-only")
    assert _assert_token(client, assertion).status_code == 200
    r = _assert_token(client, assertion)
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) + 3600},  # longer than five minutes
        {"aud": "https://elsewhere.example/token"},
        {"exp": int(time.time()) - 120},  # expired
        {"iss": "someone-else"},
    ],
)
def test_bad_client_assertions_are_refused(api, client, settings, overrides):
    client_id, key = _key_client(api)
    assertion = _assertion(client_id, key, settings.issuer + "/oauth/token", **overrides)
    r = _assert_token(client, assertion)
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


def test_assertion_signed_by_another_key_is_refused(api, client, settings):
    client_id, _key = _key_client(api)
    stranger = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    r = _assert_token(client, _assertion(client_id, stranger, settings.issuer + "/oauth/token"))
    assert r.json()["error"] == "invalid_client"


def test_signing_key_rotation_keeps_old_tokens_valid(api, client):
    old = api.token("district-sis")
    r = api.post("/v1/keys/rotate", as_="backbone-admin")
    assert r.status_code == 200
    kids = {k["kid"] for k in client.get("/oauth/jwks.json").json()["keys"]}
    assert len(kids) == 2
    assert _call(client, old).status_code == 200
    api._tokens.clear()
    new = api.token("district-sis")
    assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"] == r.json()["kid"]
    assert _call(client, new).status_code == 200


def test_secrets_are_stored_only_as_slow_salted_hashes(session, demo_credentials):
    from identity.models import Client

    row = session.get(Client, "district-sis")
    assert row.secret_hash.startswith("scrypt$")
    assert demo_credentials["district-sis"]["client_secret"] not in row.secret_hash


def test_secret_rotation_invalidates_the_old_secret(api, client, demo_credentials):
    old = demo_credentials["district-sis"]["client_secret"]
    r = api.post("/v1/clients/district-sis/secret", as_="backbone-admin")
    new = r.json()["client_secret"]
    assert new and new != old
    bad = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=("district-sis", old)
    )
    assert bad.status_code == 401
    good = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=("district-sis", new)
    )
    assert good.status_code == 200


def test_token_endpoint_is_rate_limited_with_retry_after(app, client, demo_credentials):
    from api.ratelimit import RateLimiter

    app.state.backbone.limiter = RateLimiter("memory://", "3/minute", "100/minute")
    cred = demo_credentials["district-sis"]
    statuses = [
        client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(cred["client_id"], cred["client_secret"]),
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"] == "slow_down" and r.json()["error_description"]


def test_write_endpoints_are_rate_limited_per_client(app, api):
    from api.ratelimit import RateLimiter

    api.token("backbone-admin")
    app.state.backbone.limiter = RateLimiter("memory://", "100/minute", "2/minute")
    body = {"id": "org-a", "name": "A", "kind": "partner"}
    assert api.post("/v1/organizations", as_="backbone-admin", json=body).status_code == 201
    assert (
        api.post(
            "/v1/organizations", as_="backbone-admin", json={**body, "id": "org-b"}
        ).status_code
        == 201
    )
    r = api.post("/v1/organizations", as_="backbone-admin", json={**body, "id": "org-c"})
    assert r.status_code == 429 and "retry-after" in r.headers


def test_behind_a_tls_proxy_forwarded_headers_make_oauth_see_https(app, demo_credentials):
    from fastapi.testclient import TestClient
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    cred = demo_credentials["district-sis"]
    proxied = ProxyHeadersMiddleware(app, trusted_hosts="*")
    with TestClient(proxied, base_url="http://backbone.example.org") as c:
        plain = c.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(cred["client_id"], cred["client_secret"]),
        )
        assert plain.status_code == 400 and plain.json()["error"] == "insecure_transport"
        tls = c.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(cred["client_id"], cred["client_secret"]),
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
        )
        assert tls.status_code == 200, tls.text
