"""Passkeys: adding and removing them on the account page, and signing in with one as the second
factor. The authenticator is a software one (a P-256 key, attestation ``none``, built with
cryptography and CBOR here), so every check of py_webauthn runs on real signatures."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select
from webauthn.helpers import bytes_to_base64url

from api.console.account import PENDING_COOKIE
from api.console.auth import SESSION_COOKIE
from api.ratelimit import RateLimiter
from audit.models import AuditEvent
from identity.models import Passkey, PendingSignIn
from identity.passkeys import CHALLENGE_SECONDS, relying_party
from identity.pending import PENDING_SECONDS
from identity.people import totp_code
from tests.conftest import BASE_URL
from tests.console.conftest import DemoPerson, sign_in


class SoftAuthenticator:
    """A passkey on a software authenticator: makes attestation ``none`` and signs assertions."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0
        self.user_handle: str | None = None

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def create(
        self, options: dict[str, Any], origin: str, rp_id: str | None = None
    ) -> dict[str, Any]:
        rp_id = rp_id or options["rp"]["id"]
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([0x01 | 0x04 | 0x40])  # user present, user verified, attested credential
            + self.sign_count.to_bytes(4, "big")
            + bytes(16)  # AAGUID
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + self._cose_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        self.user_handle = options["user"]["id"]
        return {
            "id": bytes_to_base64url(self.credential_id),
            "rawId": bytes_to_base64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": bytes_to_base64url(client_data),
                "attestationObject": bytes_to_base64url(attestation),
                "transports": ["internal", "hybrid"],
            },
            "clientExtensionResults": {},
        }

    def get(self, options: dict[str, Any], origin: str, *, bump: bool = True) -> dict[str, Any]:
        if bump:
            self.sign_count += 1
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = (
            hashlib.sha256(options["rpId"].encode()).digest()
            + bytes([0x01 | 0x04])
            + self.sign_count.to_bytes(4, "big")
        )
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        response = {
            "clientDataJSON": bytes_to_base64url(client_data),
            "authenticatorData": bytes_to_base64url(auth_data),
            "signature": bytes_to_base64url(signature),
        }
        if self.user_handle:
            response["userHandle"] = self.user_handle
        return {
            "id": bytes_to_base64url(self.credential_id),
            "rawId": bytes_to_base64url(self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
        }


@pytest.fixture
def rp(settings: Any) -> Any:
    return relying_party(settings.issuer, "Backbone")


def _csrf(client: Any, path: str = "/console/account") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return str(page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0])


def _signed_in(client: Any, clock: Any, person: DemoPerson) -> str:
    r = sign_in(client, clock, person)
    assert r.status_code == 303, r.text
    return _csrf(client)


def _options(client: Any, csrf: str) -> dict[str, Any]:
    r = client.post("/console/account/passkeys/options", json={"csrf": csrf})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return dict(r.json())


def _add(client: Any, csrf: str, credential: dict[str, Any], name: str = "Laptop") -> Any:
    return client.post(
        "/console/account/passkeys",
        json={"csrf": csrf, "name": name, "credential": credential},
        follow_redirects=False,
    )


def _register(client: Any, clock: Any, person: DemoPerson, rp: Any) -> SoftAuthenticator:
    csrf = _signed_in(client, clock, person)
    device = SoftAuthenticator()
    r = _add(client, csrf, device.create(_options(client, csrf), rp.origin))
    assert r.status_code == 201, r.text
    return device


def _sign_out(client: Any) -> None:
    r = client.post("/sign-out", data={"csrf": _csrf(client, "/console")}, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.clear()


def _password_step(client: Any, person: DemoPerson, next_path: str = "") -> Any:
    return client.post(
        "/sign-in",
        data={
            "username": person.username,
            "password": person.password,
            "code": "",
            "next": next_path,
        },
        follow_redirects=False,
    )


def _alive(client: Any) -> bool:
    return bool(client.get("/console", follow_redirects=False).status_code == 200)


def _actions(session: Any) -> list[str]:
    session.expire_all()
    return [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.idx))]


def test_a_person_adds_a_passkey_and_sees_it_on_their_account_page(
    client, clock, auditor, rp, session
):
    csrf = _signed_in(client, clock, auditor)
    page = client.get("/console/account")
    assert "No passkey yet." in page.text and "passkeys.js" in page.text
    options = _options(client, csrf)
    assert options["rp"]["id"] == rp.id
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["excludeCredentials"] == []
    device = SoftAuthenticator()
    r = _add(client, csrf, device.create(options, rp.origin), name="  Work   laptop ")
    assert r.status_code == 201, r.text
    assert r.json() == {"location": "/console/account?done=added"}
    row = session.scalars(select(Passkey)).one()
    assert row.credential_id == device.credential_id and row.name == "Work laptop"
    assert row.sign_count == 0 and row.transports == ["hybrid", "internal"]
    assert row.aaguid == "00000000-0000-0000-0000-000000000000"
    assert bytes_to_base64url(row.user_handle) == options["user"]["id"]
    assert len(row.user_handle) == 32 and auditor.username.encode() not in row.user_handle
    assert "person.passkey.add" in _actions(session)
    page = client.get("/console/account?done=added")
    assert (
        "Work laptop" in page.text and "never" in page.text and "The passkey is added" in page.text
    )
    # A second passkey keeps the same user handle, and the first is excluded.
    again = _options(client, csrf)
    assert again["user"]["id"] == options["user"]["id"]
    assert [c["id"] for c in again["excludeCredentials"]] == [
        bytes_to_base64url(device.credential_id)
    ]


@pytest.mark.parametrize("wrong", ["origin", "rp_id"])
def test_a_passkey_for_another_origin_or_relying_party_is_refused(
    client, clock, auditor, rp, session, wrong
):
    csrf = _signed_in(client, clock, auditor)
    options = _options(client, csrf)
    device = SoftAuthenticator()
    if wrong == "origin":
        credential = device.create(options, "https://evil.example")
    else:
        credential = device.create(options, rp.origin, rp_id="evil.example")
    r = _add(client, csrf, credential)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == "The passkey could not be verified; try again."
    assert session.scalars(select(Passkey)).all() == []
    # The challenge was used up by the refused answer: the right one is refused too now.
    r = _add(client, csrf, SoftAuthenticator().create(options, rp.origin))
    assert r.status_code == 422 and "expired or was used" in r.json()["detail"]


def test_a_challenge_answers_once(client, clock, auditor, rp, session):
    csrf = _signed_in(client, clock, auditor)
    options = _options(client, csrf)
    assert _add(client, csrf, SoftAuthenticator().create(options, rp.origin)).status_code == 201
    r = _add(client, csrf, SoftAuthenticator().create(options, rp.origin))
    assert r.status_code == 422 and "expired or was used" in r.json()["detail"]
    assert len(session.scalars(select(Passkey)).all()) == 1


def test_a_challenge_expires(client, clock, auditor, rp, session):
    csrf = _signed_in(client, clock, auditor)
    options = _options(client, csrf)
    clock.advance(seconds=CHALLENGE_SECONDS + 1)
    r = _add(client, csrf, SoftAuthenticator().create(options, rp.origin))
    assert r.status_code == 422 and "expired or was used" in r.json()["detail"]
    assert session.scalars(select(Passkey)).all() == []


def test_a_challenge_is_bound_to_its_session(client, app, clock, auditor, rp):
    csrf = _signed_in(client, clock, auditor)
    options = _options(client, csrf)
    with TestClient(app, base_url=BASE_URL) as other:
        other_csrf = _signed_in(other, clock, auditor)
        r = _add(other, other_csrf, SoftAuthenticator().create(options, rp.origin))
        assert r.status_code == 422 and "expired or was used" in r.json()["detail"]


def test_adding_a_passkey_needs_the_sessions_csrf_token(client, clock, auditor, rp, session):
    csrf = _signed_in(client, clock, auditor)
    r = client.post("/console/account/passkeys/options", json={"csrf": "forged"})
    assert r.status_code == 403 and r.json()["type"].endswith("csrf-refused")
    options = _options(client, csrf)
    r = _add(client, "", SoftAuthenticator().create(options, rp.origin))
    assert r.status_code == 403
    assert session.scalars(select(Passkey)).all() == []


def test_sign_in_with_password_then_passkey(client, clock, auditor, rp, session):
    device = _register(client, clock, auditor, rp)
    _sign_out(client)
    r = _password_step(client, auditor, "/console/audit")
    assert r.status_code == 303
    assert r.headers["location"] == "/sign-in/second-factor?next=/console/audit"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{PENDING_COOKIE}=") and "httponly" in cookie.lower()
    assert "path=/sign-in" in cookie.lower() and f"max-age={PENDING_SECONDS}" in cookie.lower()
    assert SESSION_COOKIE not in client.cookies
    # Half signed in is not signed in.
    assert not _alive(client)
    page = client.get(r.headers["location"])
    assert (
        page.status_code == 200 and "Use your passkey" in page.text and 'name="code"' in page.text
    )
    options = client.post("/sign-in/passkey/options").json()
    assert options["rpId"] == rp.id
    assert [c["id"] for c in options["allowCredentials"]] == [
        bytes_to_base64url(device.credential_id)
    ]
    r = client.post(
        "/sign-in/passkey",
        json={"credential": device.get(options, rp.origin), "next": "/console/audit"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"location": "/console/audit"}
    assert SESSION_COOKIE in client.cookies
    assert _alive(client)
    row = session.scalars(select(Passkey)).one()
    assert row.sign_count == 1 and row.last_used_at is not None
    assert _actions(session)[-1] == "person.sign_in"
    assert session.scalars(select(PendingSignIn)).all() == []
    assert "never" not in client.get("/console/account").text


def test_a_passkey_assertion_is_good_once(client, clock, auditor, rp):
    device = _register(client, clock, auditor, rp)
    _sign_out(client)
    _password_step(client, auditor)
    options = client.post("/sign-in/passkey/options").json()
    credential = device.get(options, rp.origin)
    assert client.post("/sign-in/passkey", json={"credential": credential}).status_code == 200
    _sign_out(client)
    _password_step(client, auditor)
    client.post("/sign-in/passkey/options")
    r = client.post("/sign-in/passkey", json={"credential": credential})
    assert r.status_code == 401 and r.json()["type"].endswith("sign-in-failed")
    assert not _alive(client)


def test_another_persons_passkey_does_not_sign_you_in(client, app, clock, auditor, district, rp):
    mine = _register(client, clock, auditor, rp)
    _sign_out(client)
    # The same client, one person after the other: a second TestClient would run the app's
    # lifespan again, and its shutdown leaves the first one's app not ready (503).
    theirs = _register(client, clock, district, rp)
    _sign_out(client)
    _password_step(client, auditor)
    options = client.post("/sign-in/passkey/options").json()
    assert "allowCredentials" in options, options
    assert [c["id"] for c in options["allowCredentials"]] == [
        bytes_to_base64url(mine.credential_id)
    ]
    r = client.post("/sign-in/passkey", json={"credential": theirs.get(options, rp.origin)})
    assert r.status_code == 401
    assert "Wrong username, password or code." in r.json()["detail"]
    assert not _alive(client)


def test_a_sign_count_that_goes_back_is_refused(client, clock, auditor, rp, session):
    device = _register(client, clock, auditor, rp)
    device.sign_count = 5
    _sign_out(client)
    _password_step(client, auditor)
    options = client.post("/sign-in/passkey/options").json()
    assert (
        client.post(
            "/sign-in/passkey", json={"credential": device.get(options, rp.origin)}
        ).status_code
        == 200
    )
    _sign_out(client)
    device.sign_count = 3  # a clone, behind the original
    _password_step(client, auditor)
    options = client.post("/sign-in/passkey/options").json()
    r = client.post("/sign-in/passkey", json={"credential": device.get(options, rp.origin)})
    assert r.status_code == 401 and not _alive(client)
    session.expire_all()
    assert session.scalars(select(Passkey)).one().sign_count == 6


def test_a_passkey_from_another_origin_does_not_sign_in(client, clock, auditor, rp):
    device = _register(client, clock, auditor, rp)
    _sign_out(client)
    _password_step(client, auditor)
    options = client.post("/sign-in/passkey/options").json()
    r = client.post(
        "/sign-in/passkey", json={"credential": device.get(options, "https://evil.example")}
    )
    assert r.status_code == 401 and not _alive(client)


def test_the_code_is_the_second_factor_without_javascript(client, clock, auditor, session):
    r = _password_step(client, auditor, "/console/audit")
    page = client.get(r.headers["location"])
    # No passkey: the page offers the code only.
    assert "Use your passkey" not in page.text and 'name="code"' in page.text
    r = client.post(
        "/sign-in/second-factor",
        data={"code": "000000", "next": "/console/audit"},
        follow_redirects=False,
    )
    assert r.status_code == 401 and "Wrong code, or the passkey was refused." in r.text
    assert not _alive(client)
    clock.advance(seconds=31)
    r = client.post(
        "/sign-in/second-factor",
        data={"code": totp_code(auditor.totp_secret, clock()), "next": "/console/audit"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/audit"
    assert _alive(client)
    assert _actions(session)[-1] == "person.sign_in"


def test_without_a_pending_sign_in_the_second_step_starts_over(client, clock, auditor):
    r = client.get("/sign-in/second-factor?next=/console/audit", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/sign-in?next=/console/audit"
    r = client.post("/sign-in/second-factor", data={"code": "123456"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/sign-in")
    assert client.post("/sign-in/passkey/options").status_code == 401
    # A wrong password leaves no pending sign-in either.
    r = client.post(
        "/sign-in",
        data={"username": auditor.username, "password": "wrong-password-123", "code": ""},
        follow_redirects=False,
    )
    assert r.status_code == 401 and PENDING_COOKIE not in r.headers.get("set-cookie", "")


def test_a_pending_sign_in_expires_after_five_minutes(client, clock, auditor):
    _password_step(client, auditor)
    clock.advance(seconds=PENDING_SECONDS + 1)
    r = client.post(
        "/sign-in/second-factor",
        data={"code": totp_code(auditor.totp_secret, clock())},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/sign-in")
    assert not _alive(client)


def test_failed_second_factors_count_against_the_sign_in_limits(app, clock, auditor):
    # Hour windows: a test that crossed a minute boundary would see a fresh window mid-run.
    app.state.backbone.limiter = RateLimiter("memory://", "100/hour", "100/hour", "3/hour")
    with TestClient(app, base_url=BASE_URL) as client:
        _password_step(client, auditor)
        statuses = [
            client.post(
                "/sign-in/second-factor", data={"code": "000000"}, follow_redirects=False
            ).status_code
            for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429]
        # The address is over its limit: nothing more is checked from it, not the password nor a
        # passkey's answer.
        assert _password_step(client, auditor).status_code == 429
        assert client.post("/sign-in/passkey/options").status_code == 429


def test_refused_passkeys_count_against_the_sign_in_limits(app, clock, auditor):
    app.state.backbone.limiter = RateLimiter("memory://", "100/hour", "100/hour", "3/hour")
    forged = {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}}
    with TestClient(app, base_url=BASE_URL) as client:
        _password_step(client, auditor)
        statuses = []
        for _ in range(4):
            assert client.post("/sign-in/passkey/options").status_code in (200, 429)
            statuses.append(
                client.post("/sign-in/passkey", json={"credential": forged}).status_code
            )
        assert statuses == [401, 401, 401, 429]
        assert not _alive(client)


def _remove(client: Any, passkey_id: str, csrf: str | None) -> Any:
    data = {"csrf": csrf} if csrf is not None else {}
    return client.post(
        f"/console/account/passkeys/{passkey_id}/remove", data=data, follow_redirects=False
    )


def test_removing_a_passkey_is_a_confirmed_post_with_the_csrf_token(
    client, clock, auditor, rp, session
):
    _register(client, clock, auditor, rp)
    row = session.scalars(select(Passkey)).one()
    confirm = client.get(f"/console/account/passkeys/{row.id}/remove")
    assert confirm.status_code == 200 and "Remove the passkey Laptop?" in confirm.text
    csrf = _csrf(client)
    for token in (None, "", "forged"):
        assert _remove(client, row.id, token).status_code == 403
    session.expire_all()
    assert session.scalars(select(Passkey)).one().id == row.id
    r = _remove(client, row.id, csrf)
    assert r.status_code == 303 and r.headers["location"] == "/console/account?done=removed"
    session.expire_all()
    assert session.scalars(select(Passkey)).all() == []
    assert "person.passkey.remove" in _actions(session)


def test_a_person_of_another_organization_cannot_remove_your_passkey(
    client, app, clock, auditor, district, rp, session
):
    _register(client, clock, auditor, rp)
    row = session.scalars(select(Passkey)).one()
    with TestClient(app, base_url=BASE_URL) as other:
        csrf = _signed_in(other, clock, district)
        assert other.get(f"/console/account/passkeys/{row.id}/remove").status_code == 404
        r = _remove(other, row.id, csrf)
        assert r.status_code == 404
        assert row.id not in r.text
        assert "Laptop" not in other.get("/console/account").text
    session.expire_all()
    assert session.scalars(select(Passkey)).one().id == row.id
