"""Signing in through the organization's own identity provider (OpenID Connect, code + PKCE),
against fake providers (tests/console/oidc_provider.py): the happy path and every way the
provider's answer, the browser or the person can be wrong."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.exceptions import InvalidTag
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlalchemy import select

from api.console.auth import SESSION_COOKIE
from api.console.sso import FLOW_COOKIE
from api.ratelimit import RateLimiter
from audit.actions import AuditAction
from audit.models import AuditEvent
from core.context import RequestContext
from core.errors import InvalidInput
from core.keys import unseal
from identity import identity_providers, people
from identity.errors import SignInFailed
from identity.models import IdentityProvider, Person
from tests.conftest import MASTER
from tests.console.oidc_provider import FakeProvider, Providers, rsa_key, unsigned

DISTRICT_IDP = "https://login.district.example"
HEALTH_IDP = "https://sso.health.example"


@pytest.fixture
def district_idp(clock) -> FakeProvider:
    return FakeProvider(DISTRICT_IDP, clock)


@pytest.fixture
def health_idp(clock) -> FakeProvider:
    return FakeProvider(HEALTH_IDP, clock, client_id="backbone-health")


@pytest.fixture
def providers(app, session, clock, district_idp, health_idp) -> Providers:
    ctx = RequestContext("test", clock())
    for org, idp, method in (
        ("district", district_idp, "client_secret_basic"),
        ("health", health_idp, "client_secret_post"),
    ):
        identity_providers.set_provider(
            session,
            ctx,
            MASTER,
            organization_id=org,
            issuer=idp.issuer,
            client_id=idp.client_id,
            client_secret=idp.client_secret,
            token_endpoint_auth_method=method,
        )
    session.commit()
    both = Providers(district_idp, health_idp)
    app.state.oidc_transport = both.transport()
    return both


def _person(session, clock, org="district", username="pat.sso", **kw: Any) -> Person:
    person = identity_providers.create_oidc_person(
        session,
        RequestContext("test", clock()),
        organization_id=org,
        username=username,
        role=kw.pop("role", "data-manager"),
        **kw,
    )
    session.commit()
    return person


@pytest.fixture
def pat(session, clock, providers) -> Person:
    return _person(session, clock)


PAT = {"sub": "district-0001", "preferred_username": "pat.sso", "email": "pat@district.example"}


def start(client, org="district", next_path="") -> Any:
    r = client.get(
        "/sign-in/sso", params={"organization": org, "next": next_path}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    return r


def sso(client, idp: FakeProvider, account: dict[str, Any], org="district", next_path="") -> Any:
    location = start(client, org, next_path).headers["location"]
    return client.get(idp.authorize(location, account), follow_redirects=False)


def _refused(r, status=401, says="") -> None:
    assert r.status_code == status, r.text
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert 'role="alert"' in r.text and says in r.text


def test_happy_path_opens_the_same_session_as_a_local_sign_in(client, session, district_idp, pat):
    r = start(client, next_path="/console/agreements")
    location = urlsplit(r.headers["location"])
    query = parse_qs(location.query)
    assert location.netloc == "login.district.example" and location.path == "/authorize"
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/sign-in/sso/callback"]
    assert query["code_challenge_method"] == ["S256"]
    assert "client_secret" not in location.query and district_idp.client_secret not in str(location)
    flow = r.headers["set-cookie"]
    assert flow.startswith(f"{FLOW_COOKIE}=") and "httponly" in flow.lower()
    assert "path=/sign-in/sso" in flow.lower() and "samesite=lax" in flow.lower()
    # What the flow remembers is sealed: not the state, nonce or verifier in the clear.
    sealed = client.cookies.get(FLOW_COOKIE)
    assert query["state"][0] not in sealed and query["nonce"][0] not in sealed

    back = client.get(district_idp.authorize(r.headers["location"], PAT), follow_redirects=False)
    assert back.status_code == 303, back.text
    assert back.headers["location"] == "/console/agreements"
    cookie = next(c for c in back.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/" in lowered
    assert "secure" not in lowered  # http://127.0.0.1: the only place without Secure
    assert any(
        c.startswith(f'{FLOW_COOKIE}=""') or "max-age=0" in c.lower()
        for c in back.headers.get_list("set-cookie")
        if c.startswith(FLOW_COOKIE)
    )
    # The code went with its PKCE verifier, the client authenticated with HTTP Basic.
    (sent,) = district_idp.token_requests
    assert sent["code_verifier"] and "client_secret" not in sent
    home = client.get("/console")
    assert home.status_code == 200 and "pat.sso" in home.text
    session.expire_all()
    assert session.get(Person, pat.id).oidc_subject == "district-0001"
    event = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == AuditAction.PERSON_SIGN_IN)
        .order_by(AuditEvent.idx.desc())
    ).first()
    assert event is not None and event.resource_id == pat.id
    assert event.client_id == f"person:{pat.id}"


def test_client_secret_post_and_the_sign_in_page_offers_the_organizations(
    client, session, clock, health_idp, providers
):
    page = client.get("/sign-in")
    assert 'href="/sign-in/sso?organization=district&amp;next=' in page.text
    assert "Riverton Unified School District</a>" in page.text
    assert "Riverton County Department of Public Health</a>" in page.text
    _person(session, clock, org="health", username="hana.health", login="hana@health.example")
    r = sso(
        client,
        health_idp,
        {"sub": "h-1", "preferred_username": "hana@health.example"},
        org="health",
    )
    assert r.status_code == 303 and r.headers["location"] == "/console"
    assert health_idp.token_requests[0]["client_secret"] == health_idp.client_secret


def test_a_wrong_or_missing_state_is_refused(client, district_idp, pat):
    location = start(client).headers["location"]
    back = district_idp.authorize(location, PAT)
    forged = back.replace("state=", "state=x")
    _refused(client.get(forged, follow_redirects=False), says="start again")
    # Without the browser's flow cookie (another browser), the right state is no good either.
    location = start(client).headers["location"]
    back = district_idp.authorize(location, PAT)
    client.cookies.delete(FLOW_COOKIE, path="/sign-in/sso")
    _refused(client.get(back, follow_redirects=False), says="another browser")
    assert district_idp.token_requests == []


def test_a_code_is_used_once(client, district_idp, pat):
    location = start(client).headers["location"]
    back = district_idp.authorize(location, PAT)
    flow = client.cookies.get(FLOW_COOKIE)
    assert client.get(back, follow_redirects=False).status_code == 303
    client.cookies.delete(SESSION_COOKIE)
    # The flow cookie is gone after a sign-in; replayed with it, the provider refuses the code.
    _refused(client.get(back, follow_redirects=False), says="start again")
    client.cookies.set(FLOW_COOKIE, flow, domain="127.0.0.1", path="/sign-in/sso")
    _refused(client.get(back, follow_redirects=False), says="could not be verified")


@pytest.mark.parametrize(
    "overrides",
    [
        {"nonce": "a-nonce-of-another-sign-in"},
        {"nonce": None},
        {"aud": "another-client"},
        {"aud": ["backbone-console", "another-client"]},  # several audiences and no azp
        {"iss": "https://login.evil.example"},
        {"exp": 1_000_000_000, "iat": 999_999_000},  # expired
        {"iat": 4_000_000_000},  # issued in the future
        {"sub": None},
    ],
    ids=[
        "bad-nonce",
        "no-nonce",
        "wrong-audience",
        "several-audiences",
        "wrong-issuer",
        "expired",
        "future",
        "no-sub",
    ],
)
def test_an_id_token_with_wrong_claims_is_refused(client, session, district_idp, pat, overrides):
    district_idp.overrides = overrides
    _refused(sso(client, district_idp, PAT), says="could not be verified")
    session.expire_all()
    assert session.get(Person, pat.id).oidc_subject is None


def test_an_expired_token_is_judged_by_the_service_clock(client, clock, district_idp, pat):
    # Issued five minutes ago with a four-minute life (more than a minute of skew): expired.
    district_idp.overrides = {
        "iat": int((clock() - timedelta(minutes=5)).timestamp()),
        "exp": int((clock() - timedelta(minutes=1, seconds=5)).timestamp()),
    }
    _refused(sso(client, district_idp, PAT), says="could not be verified")
    district_idp.overrides = {"exp": int((clock() - timedelta(seconds=30)).timestamp())}
    assert sso(client, district_idp, PAT).status_code == 303  # within the skew allowed


def test_several_audiences_with_this_client_as_azp_are_accepted(client, district_idp, pat):
    district_idp.overrides = {"aud": ["backbone-console", "other"], "azp": "backbone-console"}
    assert sso(client, district_idp, PAT).status_code == 303


def test_a_token_signed_by_another_key_is_refused(client, district_idp, pat):
    other = rsa_key("attacker")  # same kid as the provider's key
    district_idp.sign = lambda claims: district_idp.signed(claims, other)
    _refused(sso(client, district_idp, PAT), says="could not be verified")


def test_alg_none_and_hs256_with_the_client_secret_are_refused(client, district_idp, pat):
    district_idp.sign = unsigned
    _refused(sso(client, district_idp, PAT), says="could not be verified")
    secret = OctKey.import_key(district_idp.client_secret)
    district_idp.sign = lambda claims: jwt.encode({"alg": "HS256"}, claims, secret)
    _refused(sso(client, district_idp, PAT), says="could not be verified")


def test_a_rotated_provider_key_is_fetched_again(client, district_idp, pat):
    assert sso(client, district_idp, PAT).status_code == 303
    client.cookies.delete(SESSION_COOKIE)
    district_idp.key = rsa_key("rotated")
    assert sso(client, district_idp, PAT).status_code == 303


def test_an_unknown_person_is_refused_and_nobody_is_created(client, session, district_idp, pat):
    stranger = {"sub": "district-9999", "preferred_username": "someone.else"}
    _refused(sso(client, district_idp, stranger), says="No one is set up")
    assert session.scalar(select(Person).where(Person.oidc_subject == "district-9999")) is None


def test_the_sub_is_pinned_a_renamed_account_cannot_take_over(
    client, session, clock, district_idp, pat
):
    assert sso(client, district_idp, PAT).status_code == 303
    client.cookies.delete(SESSION_COOKIE)
    # Another account at the provider now bears pat's name: refused.
    impostor = {**PAT, "sub": "district-0002"}
    _refused(sso(client, district_idp, impostor), says="not the one this person signed in with")
    # Pat's own account, renamed at the provider, still signs pat in (by the pinned sub).
    renamed = {**PAT, "preferred_username": "patricia"}
    r = sso(client, district_idp, renamed)
    assert r.status_code == 303
    assert "pat.sso" in client.get("/console").text


def test_a_pre_provisioned_subject_must_match(client, session, clock, district_idp, providers):
    _person(session, clock, username="sam.sso", subject="district-0042")
    _refused(
        sso(client, district_idp, {"sub": "district-0043", "preferred_username": "sam.sso"}),
        says="not the one",
    )
    assert (
        sso(client, district_idp, {"sub": "district-0042", "preferred_username": "x"}).status_code
        == 303
    )


def test_a_disabled_person_is_refused(client, session, clock, district_idp, pat):
    people.disable_person(session, RequestContext("test", clock()), "pat.sso")
    session.commit()
    _refused(sso(client, district_idp, PAT), says="disabled")


def test_a_person_of_one_organization_cannot_sign_in_through_anothers_provider(
    client, session, clock, health_idp, pat
):
    # The health department's provider vouches for an account named like the district's pat.
    _refused(sso(client, health_idp, PAT, org="health"), says="No one is set up")
    session.expire_all()
    assert session.get(Person, pat.id).oidc_subject is None


def test_next_must_be_a_local_path(client, district_idp, pat):
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        client.cookies.delete(SESSION_COOKIE)
        r = sso(client, district_idp, PAT, next_path=evil)
        assert r.status_code == 303 and r.headers["location"] == "/console"


def test_an_organization_without_a_provider_or_a_provider_down(client, district_idp, pat):
    r = client.get("/sign-in/sso", params={"organization": "backbone"}, follow_redirects=False)
    _refused(r, says="no identity provider")
    district_idp.down = True
    r = client.get("/sign-in/sso", params={"organization": "district"}, follow_redirects=False)
    _refused(r, status=502, says="could not be reached")


def test_a_discovery_document_for_another_issuer_is_refused(client, district_idp, pat):
    district_idp.discovery_issuer = "https://login.evil.example"
    r = client.get("/sign-in/sso", params={"organization": "district"}, follow_redirects=False)
    _refused(r, status=502)


def test_the_provider_refusing_is_a_clear_page(client, district_idp, pat):
    location = start(client).headers["location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    r = client.get(
        "/sign-in/sso/callback",
        params={"error": "access_denied", "state": state},
        follow_redirects=False,
    )
    _refused(r, says="did not sign you in")


def test_no_token_or_claim_in_the_page_or_the_log(client, district_idp, pat, caplog):
    caplog.set_level(logging.DEBUG)
    issued: list[str] = []

    def sign(claims: dict[str, Any]) -> str:
        token = district_idp.signed({**claims, "nonce": "wrong"})
        issued.append(token)
        return token

    district_idp.sign = sign
    r = sso(client, district_idp, {**PAT, "email": "pat.private@district.example"})
    _refused(r)
    (token,) = issued
    for secret in (token, "district-0001", "pat.private", district_idp.client_secret):
        assert secret not in r.text and secret not in caplog.text
        assert secret not in r.headers.get("location", "")


def test_a_person_who_signs_in_with_a_provider_cannot_sign_in_locally(client, session, clock, pat):
    with pytest.raises(SignInFailed):
        people.authenticate(session, RequestContext("t", clock()), MASTER, "pat.sso", "", "")
    r = client.post(
        "/sign-in", data={"username": "pat.sso", "password": "x" * 12, "code": "123456"}
    )
    assert r.status_code == 401


def test_allowed_domains_need_a_verified_email_in_one_of_them(
    client, session, clock, district_idp, pat
):
    row = session.get(IdentityProvider, "district")
    identity_providers.set_provider(
        session,
        RequestContext("test", clock()),
        MASTER,
        organization_id="district",
        issuer=row.issuer,
        client_id=row.client_id,
        client_secret=district_idp.client_secret,
        allowed_domains=["district.example"],
    )
    session.commit()
    _refused(sso(client, district_idp, {**PAT, "email": "pat@gmail.example"}), says="domain")
    _refused(sso(client, district_idp, {**PAT, "email_verified": False}), says="domain")
    assert sso(client, district_idp, {**PAT, "email_verified": True}).status_code == 303


def test_the_email_claim_must_be_verified(client, session, clock, district_idp, providers):
    row = session.get(IdentityProvider, "district")
    identity_providers.set_provider(
        session,
        RequestContext("test", clock()),
        MASTER,
        organization_id="district",
        issuer=row.issuer,
        client_id=row.client_id,
        client_secret=district_idp.client_secret,
        claim="email",
    )
    _person(session, clock, username="eve.sso", login="Eve@District.example")
    account = {"sub": "d-7", "email": "eve@district.example"}
    _refused(sso(client, district_idp, account), says="No one is set up")
    assert sso(client, district_idp, {**account, "email_verified": True}).status_code == 303


def test_failed_sso_sign_ins_are_limited_per_address(app, client, district_idp, pat):
    app.state.backbone.limiter = RateLimiter("memory://", "100/hour", "100/hour", "3/hour")
    district_idp.overrides = {"nonce": "wrong"}
    statuses = [sso(client, district_idp, PAT).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    r = client.get("/sign-in/sso", params={"organization": "district"}, follow_redirects=False)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_the_client_secret_is_sealed_and_bound_to_the_organization(session, providers):
    row = session.get(IdentityProvider, "district")
    assert b"provider-issued-secret" not in row.client_secret_sealed
    config = identity_providers.config_of(MASTER, row)
    assert config.client_secret == "provider-issued-secret-0123456789abcdef"
    key = MASTER.derive(identity_providers.SECRET_PURPOSE)
    with pytest.raises(InvalidTag):
        unseal(key, row.client_secret_sealed, b"identity-provider:health")
    shown = identity_providers.describe(row)
    assert "provider-issued-secret" not in str(shown) and "client_secret" not in shown


def test_provider_settings_are_checked(session, clock, providers):
    ctx = RequestContext("test", clock())
    base = {
        "organization_id": "district",
        "issuer": DISTRICT_IDP,
        "client_id": "c",
        "client_secret": "s",
    }
    for bad in (
        {"issuer": "http://login.district.example"},
        {"issuer": "https://login.district.example/?x=1"},
        {"claim": "name"},
        {"token_endpoint_auth_method": "none"},
        {"allowed_domains": ["not a domain"]},
        {"client_secret": ""},
    ):
        with pytest.raises(InvalidInput):
            identity_providers.set_provider(session, ctx, MASTER, **{**base, **bad})
    row = identity_providers.set_provider(
        session, ctx, MASTER, **{**base, "scopes": "email", "issuer": DISTRICT_IDP + "/"}
    )
    assert row.scopes == "openid email" and row.issuer == DISTRICT_IDP
