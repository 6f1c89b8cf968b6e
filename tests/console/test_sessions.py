"""Sessions: kept on the server, ended by idle time, by their absolute lifetime and by sign-out;
the cookie's flags; CSRF on every form of a session; sign-in limited without locking anyone out;
a safe ``next``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.console.auth import SESSION_COOKIE, cookie_is_secure, local_path
from api.ratelimit import RateLimiter
from core.settings import Settings
from identity.models import PersonSession
from identity.people import totp_code
from tests.conftest import BASE_URL
from tests.console.conftest import sign_in


def _signed_in(client, clock, person) -> None:
    r = sign_in(client, clock, person)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console"


def _alive(client) -> bool:
    r = client.get("/console", follow_redirects=False)
    if r.status_code == 303:
        assert r.headers["location"] == "/sign-in?next=/console"
        return False
    assert r.status_code == 200, r.text
    return True


def test_the_cookie_is_httponly_lax_whole_site_and_secure_unless_local(client, clock, auditor):
    r = sign_in(client, clock, auditor)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= flags
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in flags  # the test issuer is http://127.0.0.1
    assert r.headers["cache-control"] == "no-store"
    assert cookie_is_secure(Settings(issuer="https://backbone.example.org"))
    assert cookie_is_secure(Settings(issuer="http://backbone.example.org"))
    assert not cookie_is_secure(Settings(issuer="http://localhost:8000"))


def test_a_secure_issuer_gets_a_secure_cookie(api_with, clock, auditor):
    with api_with(issuer="https://backbone.example.org") as api:
        r = sign_in(api.client, clock, auditor)
        assert r.status_code == 303
        assert "secure" in r.headers["set-cookie"].lower()


def test_the_session_ends_after_30_idle_minutes_and_is_kept_alive_by_use(client, clock, auditor):
    _signed_in(client, clock, auditor)
    for _ in range(3):
        clock.advance(minutes=29)
        assert _alive(client)
    clock.advance(minutes=30, seconds=1)
    assert not _alive(client)


def test_the_session_ends_12_hours_after_sign_in_however_busy(client, clock, auditor):
    _signed_in(client, clock, auditor)
    for _ in range(28):  # 11 h 40 min of use, never idle for long
        clock.advance(minutes=25)
        assert _alive(client)
    clock.advance(minutes=21)
    assert not _alive(client)


def test_session_timeouts_follow_the_settings(api_with, clock, auditor):
    with api_with(session_idle_seconds=120, session_max_seconds=300) as api:
        _signed_in(api.client, clock, auditor)
        clock.advance(seconds=100)
        assert _alive(api.client)
        clock.advance(seconds=121)
        assert not _alive(api.client)
        _signed_in(api.client, clock, auditor)
        for _ in range(2):
            clock.advance(seconds=100)
            assert _alive(api.client)
        clock.advance(seconds=110)  # idle for less than 120 s, but 310 s after sign-in
        assert not _alive(api.client)


def test_sign_out_deletes_the_session(client, clock, auditor, session):
    _signed_in(client, clock, auditor)
    token = client.cookies[SESSION_COOKIE]
    home = client.get("/console")
    csrf = home.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    before = session.scalar(select(func.count()).select_from(PersonSession))
    r = client.post("/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"] or "max-age=0" in (
        r.headers["set-cookie"].lower()
    )
    assert session.scalar(select(func.count()).select_from(PersonSession)) == before - 1
    # The old token is worth nothing, even if the browser kept it.
    client.cookies.set(SESSION_COOKIE, token)
    assert not _alive(client)


def test_a_form_without_the_sessions_csrf_token_is_refused(client, clock, auditor):
    _signed_in(client, clock, auditor)
    for data in ({}, {"csrf": "forged"}, {"csrf": ""}):
        r = client.post("/sign-out", data=data, follow_redirects=False)
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert "The form is not from this session" in r.text
        assert "Reload the page" in r.text
    # Refused forms changed nothing: still signed in.
    assert _alive(client)
    # Another session's token is not this one's.
    with TestClient(client.app, base_url=BASE_URL) as other:
        _signed_in(other, clock, auditor)
        theirs = other.get("/console").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        # (inside: leaving a client's block stops the application's lifespan)
        assert client.post("/sign-out", data={"csrf": theirs}).status_code == 403


@contextmanager
def from_address(app, host: str) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL, client=(host, 40000)) as c:
        yield c


def test_failed_sign_ins_are_limited_but_never_lock_the_person_out(app, clock, auditor):
    # Hour windows: a test that crossed a minute boundary would see a fresh window mid-run.
    app.state.backbone.limiter = RateLimiter("memory://", "100/hour", "100/hour", "3/hour")
    statuses = []
    for i in range(6):
        # Each stranger from an address of their own: only the username's bucket fills.
        with from_address(app, f"203.0.113.{i + 10}") as stranger:
            r = sign_in(stranger, clock, auditor, password="not the password")
            statuses.append(r.status_code)
            assert "Wrong username, password or code." in r.text or r.status_code == 429
            assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert statuses == [401, 401, 401, 429, 429, 429]
    # One address that keeps failing is refused before anything is checked...
    with from_address(app, "203.0.113.99") as stranger:
        codes = [
            sign_in(stranger, clock, auditor, username=f"guess{i}").status_code for i in range(5)
        ]
        assert codes[:3] == [401, 401, 401] and set(codes[3:]) == {429}
        r = sign_in(stranger, clock, auditor)  # even with the right password
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "Too many failed sign-ins" in r.text
    # ...but the person, from their own address, signs in with their password and code.
    with from_address(app, "198.51.100.7") as person:
        r = sign_in(person, clock, auditor)
        assert r.status_code == 303, r.text
        assert _alive(person)


def test_sign_in_failure_says_only_wrong_username_password_or_code(client, clock, auditor):
    for changes in (
        {"password": "wrong-password-123"},
        {"username": "no.such.person"},
        {"code": "123456"},
        # Without a code, the password is the first of two steps: a wrong one is answered alike.
        {"password": "wrong-password-123", "code": ""},
        {"username": "no.such.person", "code": ""},
    ):
        r = sign_in(client, clock, auditor, **changes)
        assert r.status_code == 401
        assert "Wrong username, password or code." in r.text
        # Nothing that was typed comes back.
        for typed in changes.values():
            if typed:
                assert typed not in r.text
        assert auditor.password not in r.text


def test_next_is_a_local_path_only(client, clock, auditor):
    for given, expected in (
        ("/console/audit?action=audit.*", "/console/audit?action=audit.*"),
        ("//evil.example/x", "/console"),
        ("https://evil.example/", "/console"),
        ("/\\evil.example", "/console"),
        ("javascript:alert(1)", "/console"),
        ("", "/console"),
    ):
        assert local_path(given) == expected
        r = sign_in(client, clock, auditor, next_path=given)
        assert r.status_code == 303 and r.headers["location"] == expected


def test_a_page_without_a_session_redirects_to_sign_in_and_back(client, clock, auditor):
    r = client.get("/console/audit?organization=district", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/sign-in?next=/console/audit%3Forganization%3Ddistrict"
    form = client.get(r.headers["location"])
    assert 'name="next" value="/console/audit?organization=district"' in form.text
    clock.advance(seconds=31)
    r = client.post(
        "/sign-in",
        data={
            "username": auditor.username,
            "password": auditor.password,
            "code": totp_code(auditor.totp_secret, clock()),
            "next": "/console/audit?organization=district",
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == "/console/audit?organization=district"
    assert client.get(r.headers["location"]).status_code == 200


def test_ended_sessions_are_deleted_when_someone_signs_in(
    client, clock, auditor, district, session
):
    _signed_in(client, clock, auditor)
    clock.advance(minutes=31)  # idle: ended
    assert not _alive(client)
    _signed_in(client, clock, district)
    session.expire_all()
    live = session.scalars(select(PersonSession)).all()
    assert len(live) == 1 and all(row.idle_expires_at > clock() for row in live)


def test_a_disabled_person_is_signed_out_at_once_and_cannot_sign_in(
    client, clock, auditor, session
):
    from core.context import RequestContext
    from identity.people import disable_person

    _signed_in(client, clock, auditor)
    disable_person(session, RequestContext("req_test", clock(), None), auditor.username)
    session.commit()
    assert not _alive(client)
    r = sign_in(client, clock, auditor)
    assert r.status_code == 401 and "Wrong username, password or code." in r.text
