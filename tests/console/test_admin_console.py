"""The administrators' console: organizations, clients and people, through the services the API
and the ``backbone person`` commands call; every view audited naming the person; a client
secret, a password and a TOTP secret shown once, never again and never in a URL or the log; a
person without the scope ``admin`` refused on every page and every form."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from sqlalchemy import select

from audit.actions import AuditAction
from audit.models import AuditEvent
from identity.models import Client, Person, PersonSession
from tests.console.conftest import DemoPerson, sign_in

PAGES = ("/console/admin/organizations", "/console/admin/clients", "/console/admin/people")


@pytest.fixture
def ada(demo_people: dict[str, DemoPerson]) -> DemoPerson:
    return demo_people["ada.admin"]


def _person(session: Any, username: str) -> str:
    return "person:" + session.scalar(select(Person.id).where(Person.username == username))


def _events(session: Any, n: int = 5) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.idx.desc()).limit(n)))


def _all_events_text(session: Any) -> str:
    session.expire_all()
    rows = session.scalars(select(AuditEvent)).all()
    return json.dumps(
        [{k: str(v) for k, v in vars(e).items() if not k.startswith("_")} for e in rows]
    )


def _csrf(text: str) -> str:
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _code(text: str, element_id: str) -> str:
    found = re.search(rf'<code id="{element_id}"[^>]*>([^<]+)</code>', text)
    assert found, text
    return html.unescape(found.group(1))


def test_the_home_page_links_an_administrator_to_their_pages(client, clock, ada):
    assert sign_in(client, clock, ada).status_code == 303
    home = client.get("/console")
    for path in PAGES:
        assert f'href="{path}"' in home.text


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_audited_naming_the_person(client, clock, ada, session, path):
    sign_in(client, clock, ada)
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    event = _events(session, 1)[0]
    assert event.action in (
        AuditAction.ORGANIZATION_READ,
        AuditAction.CLIENT_READ,
        AuditAction.PERSON_READ,
    )
    assert event.client_id == _person(session, "ada.admin")


def test_organizations_list_as_the_api_and_one_is_created(client, clock, ada, api, session):
    sign_in(client, clock, ada)
    r = client.get("/console/admin/organizations")
    for org in api.get("/v1/organizations", as_="backbone-admin").json():
        assert f'<th scope="row">{org["id"]}</th>' in r.text
    form = {
        "csrf": _csrf(r.text),
        "org_id": "new-partner",
        "name": "New Partner",
        "kind": "partner",
    }
    done = client.post("/console/admin/organizations", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    listed = api.get("/v1/organizations", as_="backbone-admin").json()
    assert {"id": "new-partner", "name": "New Partner", "kind": "partner"} in listed
    event = next(e for e in _events(session) if e.action == AuditAction.ORGANIZATION_CREATE)
    assert event.client_id == _person(session, "ada.admin")
    again = client.post("/console/admin/organizations", data=form)
    assert again.status_code == 409


def test_a_client_secret_is_shown_once_and_works(client, clock, ada, api, session):
    sign_in(client, clock, ada)
    r = client.get("/console/admin/clients")
    form = {
        "csrf": _csrf(r.text),
        "organization": "district",
        "role": "partner-system",
        "name": "District SIS loader",
    }
    made = client.post("/console/admin/clients", data=form)
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    assert "shown now and never again" in made.text
    secret = _code(made.text, "client-secret")
    client_id = session.scalar(select(Client.id).where(Client.name == "District SIS loader"))
    assert client_id in made.text
    assert secret not in str(made.url)
    # The secret works at the token endpoint.
    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "records:write"},
        auth=(client_id, secret),
    )
    assert token.status_code == 200, token.text
    # Never again: not in the list, nor in the log.
    listed = client.get("/console/admin/clients")
    assert client_id in listed.text and secret not in listed.text
    assert secret not in _all_events_text(session)
    event = next(e for e in _events(session, 6) if e.action == AuditAction.CLIENT_CREATE)
    assert event.client_id == _person(session, "ada.admin")
    # Rotate: a new secret, shown once; the old one no longer works.
    rotated = client.post(
        f"/console/admin/clients/{client_id}/secret", data={"csrf": _csrf(listed.text)}
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    new_secret = _code(rotated.text, "client-secret")
    assert new_secret != secret
    assert new_secret not in client.get("/console/admin/clients").text
    assert new_secret not in _all_events_text(session)
    old = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "records:write"},
        auth=(client_id, secret),
    )
    assert old.status_code == 401
    # Disable: a confirmation step, then the client is disabled.
    confirm = client.get(f"/console/admin/clients/{client_id}/disable")
    assert confirm.status_code == 200 and "stops working now" in confirm.text
    unticked = client.post(
        f"/console/admin/clients/{client_id}/disable", data={"csrf": _csrf(confirm.text)}
    )
    assert unticked.status_code == 422
    done = client.post(
        f"/console/admin/clients/{client_id}/disable",
        data={"csrf": _csrf(confirm.text), "confirm": "disable"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    event = _events(session, 1)[0]
    assert event.action == AuditAction.CLIENT_DISABLE
    assert event.client_id == _person(session, "ada.admin")
    shown = {c["client_id"]: c for c in api.get("/v1/clients", as_="backbone-admin").json()}
    assert shown[client_id]["disabled"] is True


def test_a_person_is_created_with_secrets_shown_once_and_disabled(client, clock, ada, session):
    sign_in(client, clock, ada)
    r = client.get("/console/admin/people")
    assert "ada.admin" in r.text
    form = {
        "csrf": _csrf(r.text),
        "organization": "district",
        "role": "data-manager",
        "username": "nora.new",
        "name": "Nora New",
    }
    made = client.post("/console/admin/people", data=form)
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    assert "shown now and never again" in made.text
    password = _code(made.text, "person-password")
    totp_secret = _code(made.text, "person-totp-secret")
    assert _code(made.text, "person-totp-uri").startswith("otpauth://totp/")
    later = client.get("/console/admin/people")
    assert "nora.new" in later.text
    assert password not in later.text and totp_secret not in later.text
    log = _all_events_text(session)
    assert password not in log and totp_secret not in log
    event = next(e for e in _events(session, 4) if e.action == AuditAction.PERSON_CREATE)
    assert event.client_id == _person(session, "ada.admin")
    # The new person signs in with what was shown.
    nora = DemoPerson("nora.new", password, totp_secret, "district", "data-manager")
    other = client.__class__(client.app, base_url=str(client.base_url))
    assert sign_in(other, clock, nora).status_code == 303
    nora_id = _person(session, "nora.new").removeprefix("person:")
    session.expire_all()
    assert session.scalars(select(PersonSession).where(PersonSession.person_id == nora_id)).all()
    # Disabling them ends their sessions.
    confirm = client.get("/console/admin/people/nora.new/disable")
    assert confirm.status_code == 200
    done = client.post(
        "/console/admin/people/nora.new/disable",
        data={"csrf": _csrf(confirm.text), "confirm": "disable"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    session.expire_all()
    assert not session.scalars(
        select(PersonSession).where(PersonSession.person_id == nora_id)
    ).all()
    assert other.get("/console", follow_redirects=False).status_code == 303
    assert sign_in(other, clock, nora).status_code != 303
    assert _events(session, 1)[0].action == AuditAction.PERSON_DISABLE


def test_a_form_without_the_csrf_token_is_refused(client, clock, ada, session):
    sign_in(client, clock, ada)
    forms = {
        "/console/admin/organizations": {"org_id": "x-org", "name": "X", "kind": "partner"},
        "/console/admin/clients": {
            "organization": "district",
            "role": "partner-system",
            "name": "X",
        },
        "/console/admin/people": {
            "organization": "district",
            "role": "data-manager",
            "username": "xavier",
        },
        "/console/admin/clients/backbone-admin/secret": {},
        "/console/admin/clients/backbone-admin/disable": {"confirm": "disable"},
        "/console/admin/people/dana.district/disable": {"confirm": "disable"},
    }
    for path, form in forms.items():
        for token in ("", "wrong"):
            r = client.post(path, data={**form, "csrf": token})
            assert r.status_code == 403, (path, r.text)
    session.expire_all()
    assert session.scalar(select(Person).where(Person.username == "xavier")) is None
    assert session.get(Client, "backbone-admin").disabled_at is None
    dana = session.scalar(select(Person).where(Person.username == "dana.district"))
    assert dana.disabled_at is None


def test_a_person_without_the_admin_scope_is_refused_everywhere(client, clock, district, session):
    sign_in(client, clock, district)
    home = client.get("/console")
    csrf = _csrf(home.text)
    for path in (
        *PAGES,
        "/console/admin/clients/backbone-admin/disable",
        "/console/admin/people/ada.admin/disable",
    ):
        r = client.get(path)
        assert r.status_code == 403, path
        event = _events(session, 1)[0]
        assert event.client_id == _person(session, "dana.district")
        assert event.outcome == "denied"
    forms = {
        "/console/admin/organizations": {"org_id": "y-org", "name": "Y", "kind": "partner"},
        "/console/admin/clients": {"organization": "district", "role": "admin", "name": "Y"},
        "/console/admin/people": {"organization": "backbone", "role": "admin", "username": "yan"},
        "/console/admin/clients/backbone-admin/secret": {},
        "/console/admin/clients/backbone-admin/disable": {"confirm": "disable"},
        "/console/admin/people/ada.admin/disable": {"confirm": "disable"},
    }
    for path, form in forms.items():
        r = client.post(path, data={**form, "csrf": csrf})
        assert r.status_code == 403, path
    session.expire_all()
    assert session.scalar(select(Person).where(Person.username == "yan")) is None
    assert session.scalar(select(Client).where(Client.name == "Y")) is None
    assert session.get(Client, "backbone-admin").disabled_at is None
    ada = session.scalar(select(Person).where(Person.username == "ada.admin"))
    assert ada.disabled_at is None


def test_refusals_of_the_services_are_pages_with_the_api_status(client, clock, ada, session):
    sign_in(client, clock, ada)
    csrf = _csrf(client.get("/console/admin/people").text)
    # A role for another kind of organization, refused by the service, nothing created.
    wrong = {
        "csrf": csrf,
        "organization": "district",
        "role": "auditor",
        "username": "wrong.kind",
    }
    r = client.post("/console/admin/people", data=wrong)
    assert r.status_code == 422 and "<h1>" in r.text
    session.expire_all()
    assert session.scalar(select(Person).where(Person.username == "wrong.kind")) is None
    assert client.get("/console/admin/clients/no-such-client/disable").status_code == 404
    assert client.get("/console/admin/people/no.such.person/disable").status_code == 404
    gone = client.post("/console/admin/clients/no-such-client/secret", data={"csrf": csrf})
    assert gone.status_code == 404
