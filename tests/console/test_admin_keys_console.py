"""The administrators' console: a client's public keys for ``private_key_jwt`` (``POST
/v1/clients/{id}/keys``: public keys only, the new set replacing the old) and the rotation of
the token signing key (``POST /v1/keys/rotate``) after a page that explains its effect; both
audited naming the person, refused without the CSRF token, and out of anyone else's reach."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc.jwk import ECKey
from sqlalchemy import select

from audit.models import AuditEvent
from identity.models import Client, Person
from tests.console.conftest import DemoPerson, sign_in
from tests.identity.test_oauth import _assert_token, _assertion, _call, _key_client


@pytest.fixture
def ada(demo_people: dict[str, DemoPerson]) -> DemoPerson:
    return demo_people["ada.admin"]


def _csrf(text: str) -> str:
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _person(session: Any, username: str) -> str:
    return "person:" + session.scalar(select(Person.id).where(Person.username == username))


def _events(session: Any, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.idx)
        )
    )


def test_a_clients_keys_are_replaced_by_public_keys_only(
    client, clock, ada, api, session, settings
):
    client_id, old_key = _key_client(api)
    new_key = ECKey.generate_key("P-256", parameters={"kid": "k2"})
    sign_in(client, clock, ada)
    assert (
        f'href="/console/admin/clients/{client_id}/keys"'
        in client.get("/console/admin/clients").text
    )
    page = client.get(f"/console/admin/clients/{client_id}/keys")
    assert page.status_code == 200, page.text
    assert "<code>k1</code>" in page.text and "private_key_jwt" in page.text
    url = f"/console/admin/clients/{client_id}/keys"
    csrf = _csrf(page.text)
    public = json.dumps({"keys": [new_key.as_dict(private=False)]})
    private = json.dumps({"keys": [new_key.as_dict(private=True)]})
    assert client.post(url, data={"csrf": "", "jwks": public}).status_code == 403
    r = client.post(url, data={"csrf": csrf, "jwks": private})
    assert r.status_code == 422 and "private key material" in r.text
    assert client.post(url, data={"csrf": csrf, "jwks": "not json"}).status_code == 422
    session.expire_all()
    assert [k["kid"] for k in session.get(Client, client_id).jwks["keys"]] == ["k1"]
    r = client.post(url, data={"csrf": csrf, "jwks": public}, follow_redirects=False)
    assert r.status_code == 303, r.text
    shown = client.get(r.headers["location"])
    assert "public keys are registered" in shown.text and "<code>k2</code>" in shown.text
    # The client now signs its token requests with the new key; the old one is refused.
    audience = settings.issuer + "/oauth/token"
    assert _assert_token(client, _assertion(client_id, new_key, audience)).status_code == 200
    refused = _assert_token(client, _assertion(client_id, old_key, audience))
    assert refused.json()["error"] == "invalid_client"
    outcomes = [(e.outcome, e.client_id) for e in _events(session, "client.register_keys")]
    person = _person(session, ada.username)
    assert [o for o, _ in outcomes] == ["denied", "rejected", "rejected", "succeeded"]
    assert all(who == person for _, who in outcomes)


def test_the_signing_key_is_rotated_after_its_effect_is_explained(client, clock, ada, api, session):
    old_token = api.token("district-sis")
    sign_in(client, clock, ada)
    assert 'href="/console/admin/signing-key"' in client.get("/console").text
    page = client.get("/console/admin/signing-key")
    assert page.status_code == 200, page.text
    before = client.get("/oauth/jwks.json").json()["keys"]
    assert before[0]["kid"] in page.text
    assert "stays published at /oauth/jwks.json" in page.text
    url = "/console/admin/signing-key/rotate"
    csrf = _csrf(page.text)
    assert client.post(url, data={"csrf": "x", "confirm": "rotate"}).status_code == 403
    assert client.post(url, data={"csrf": csrf}).status_code == 422
    assert client.get("/oauth/jwks.json").json()["keys"] == before
    r = client.post(url, data={"csrf": csrf, "confirm": "rotate"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    after = client.get(r.headers["location"])
    assert "The signing key is rotated" in after.text
    kids = [k["kid"] for k in client.get("/oauth/jwks.json").json()["keys"]]
    assert len(kids) == 2 and before[0]["kid"] in kids
    new_kid = next(k for k in kids if k != before[0]["kid"])
    assert new_kid in after.text
    # Tokens signed before stay valid; new ones are signed with the new key.
    assert _call(client, old_token).status_code == 200
    api._tokens.clear()
    token = api.token("district-sis")
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"] == new_kid
    events = _events(session, "signing_key.rotate")
    assert [e.outcome for e in events] == ["denied", "rejected", "succeeded"]
    assert events[-1].client_id == _person(session, ada.username)


def test_no_one_else_reaches_keys(client, clock, district, api, session):
    client_id, _key = _key_client(api)
    sign_in(client, clock, district)
    csrf = _csrf(client.get("/console").text)
    for path in (f"/console/admin/clients/{client_id}/keys", "/console/admin/signing-key"):
        assert client.get(path).status_code == 403, path
    assert (
        client.post(
            f"/console/admin/clients/{client_id}/keys", data={"csrf": csrf, "jwks": "{}"}
        ).status_code
        == 403
    )
    r = client.post("/console/admin/signing-key/rotate", data={"csrf": csrf, "confirm": "rotate"})
    assert r.status_code == 403
    assert [e.outcome for e in _events(session, "signing_key.rotate")] == ["denied"]
