"""People: argon2id password hashes, TOTP secrets sealed at rest and good once, roles that must
fit the organization's kind, and the principal a person acts as."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher

from core.context import RequestContext
from core.errors import Conflict, InvalidInput
from identity import people
from identity.errors import SignInFailed
from identity.models import Person
from identity.scopes import ROLES
from tests.conftest import MASTER


def _ctx(clock) -> RequestContext:
    return RequestContext("req_test", clock(), None)


def _create(session, clock, **changes):
    params = {
        "organization_id": "auditor",
        "username": "pat.tester",
        "role": "auditor",
        "name": "Pat Tester",
        **changes,
    }
    return people.create_person(session, _ctx(clock), MASTER, **params)


def test_a_password_is_an_argon2id_hash_and_the_totp_secret_is_sealed(session, clock):
    enrolled = _create(session, clock)
    person = enrolled.person
    assert person.password_hash.startswith("$argon2id$v=19$")
    assert enrolled.password not in person.password_hash
    assert PasswordHasher().verify(person.password_hash, enrolled.password)
    assert people.verify_password(enrolled.password, person.password_hash)
    assert not people.verify_password(enrolled.password + "x", person.password_hash)
    assert not people.verify_password(enrolled.password, "not a hash")
    # Sealed under the master key's TOTP purpose key, bound to the person.
    assert enrolled.totp_secret.encode() not in person.totp_sealed
    assert people.totp_secret_of(MASTER, person) == enrolled.totp_secret
    assert enrolled.provisioning_uri.startswith("otpauth://totp/")
    assert f"secret={enrolled.totp_secret}" in enrolled.provisioning_uri
    assert len(enrolled.password) >= 20


def test_a_person_acts_with_their_roles_scopes_for_their_organization(session, clock):
    person = _create(session, clock).person
    principal = people.principal_of(person)
    assert principal.client_id == f"person:{person.id}"
    assert principal.organization_id == "auditor"
    assert principal.organization_kind == "auditor"
    assert principal.scopes == ROLES["auditor"][1]


def test_roles_usernames_and_passwords_are_checked(session, clock):
    with pytest.raises(InvalidInput, match="kind auditor"):
        _create(session, clock, organization_id="district")
    with pytest.raises(InvalidInput, match="Role must be one of"):
        _create(session, clock, role="superuser")
    with pytest.raises(InvalidInput, match="username"):
        _create(session, clock, username="Not A Slug")
    with pytest.raises(InvalidInput, match="12 to 256"):
        _create(session, clock, password="short")
    given = _create(session, clock, password="a long enough passphrase")
    assert given.password == "a long enough passphrase"
    with pytest.raises(Conflict):
        _create(session, clock, username="pat.tester")


def test_sign_in_needs_password_and_a_current_code_that_is_good_once(session, clock):
    enrolled = _create(session, clock)
    secret = enrolled.totp_secret
    ctx = _ctx(clock)
    code = people.totp_code(secret, clock())
    for username, password, given in (
        ("pat.tester", "wrong password!", code),
        ("nobody.here", enrolled.password, code),
        ("pat.tester", enrolled.password, "000000" if code != "000000" else "111111"),
        ("pat.tester", enrolled.password, "not a code"),
        ("pat.tester", enrolled.password, people.totp_code(secret, clock() - timedelta(minutes=5))),
    ):
        with pytest.raises(SignInFailed) as refused:
            people.authenticate(session, ctx, MASTER, username, password, given)
        assert refused.value.detail == "Wrong username, password or code."
    person = people.authenticate(session, ctx, MASTER, "pat.tester", enrolled.password, code)
    assert isinstance(person, Person) and person.totp_last_step is not None
    # The same code again (a replay) is refused; the next time step's code is good.
    with pytest.raises(SignInFailed):
        people.authenticate(session, ctx, MASTER, "pat.tester", enrolled.password, code)
    later = RequestContext("req_test", clock() + timedelta(seconds=30), None)
    people.authenticate(
        session, later, MASTER, "pat.tester", enrolled.password, people.totp_code(secret, later.now)
    )


def test_a_code_one_step_early_or_late_is_accepted(session, clock):
    enrolled = _create(session, clock)
    ctx = _ctx(clock)
    late = people.totp_code(enrolled.totp_secret, clock() - timedelta(seconds=30))
    people.authenticate(session, ctx, MASTER, "pat.tester", enrolled.password, late)
