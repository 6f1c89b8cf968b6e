"""The token endpoint cannot be used to lock a client out: strangers' failures are counted per
source address and per claimed id, apart from the verified client's own allowance; errors,
429 included, are RFC 6749 error objects."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from api.ratelimit import RateLimiter
from tests.conftest import BASE_URL

GRANT = {"grant_type": "client_credentials"}


@contextmanager
def from_address(app, host: str) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL, client=(host, 40000)) as c:
        yield c


def limiter(app, issuance: str = "5/hour", failures: str = "10/hour") -> None:
    # Hour windows: a test that crossed a minute boundary saw a fresh window mid-run.
    app.state.backbone.limiter = RateLimiter("memory://", issuance, "100/hour", failures)


def assert_oauth_error(r, status: int, error: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == error and body["error_description"], body
    assert "type" not in body
    assert r.headers["cache-control"] == "no-store"
    return body


def test_strangers_claiming_a_clients_id_never_lock_it_out(app, demo_credentials):
    limiter(app)
    cred = demo_credentials["district-sis"]
    with from_address(app, "203.0.113.7") as stranger:
        statuses = [
            stranger.post("/oauth/token", data=GRANT, auth=(cred["client_id"], "wrong")).status_code
            for _ in range(80)
        ]
        # Failures spend the stranger's address and the claimed id's failure buckets only.
        assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
        r = stranger.post("/oauth/token", data=GRANT, auth=(cred["client_id"], "wrong"))
        assert_oauth_error(r, 429, "slow_down")
        assert int(r.headers["retry-after"]) >= 1
    with from_address(app, "198.51.100.20") as partner:
        for _ in range(5):
            r = partner.post(
                "/oauth/token", data=GRANT, auth=(cred["client_id"], cred["client_secret"])
            )
            assert r.status_code == 200, r.text
        # Its own issuance allowance is its own: the sixth is refused, in RFC 6749 form.
        r = partner.post(
            "/oauth/token", data=GRANT, auth=(cred["client_id"], cred["client_secret"])
        )
        assert_oauth_error(r, 429, "slow_down")
        assert int(r.headers["retry-after"]) >= 1


def test_failures_under_the_claimed_id_are_limited_but_the_right_secret_still_works(
    app, demo_credentials
):
    limiter(app, issuance="100/hour", failures="3/hour")
    cred = demo_credentials["district-sis"]
    for i in range(6):
        # Each stranger comes from a different address: only the claimed id's bucket fills.
        with from_address(app, f"203.0.113.{i + 10}") as stranger:
            r = stranger.post("/oauth/token", data=GRANT, auth=(cred["client_id"], "wrong"))
            assert r.status_code == (401 if i < 3 else 429), r.text
    with from_address(app, "198.51.100.21") as partner:
        r = partner.post(
            "/oauth/token", data=GRANT, auth=(cred["client_id"], cred["client_secret"])
        )
        assert r.status_code == 200, r.text


def test_failed_authentications_under_made_up_ids_are_limited_per_address(app, demo_credentials):
    limiter(app, failures="5/hour")
    with from_address(app, "203.0.113.99") as stranger:
        statuses = [
            stranger.post("/oauth/token", data=GRANT, auth=(f"made-up-{i}", "x")).status_code
            for i in range(8)
        ]
        assert statuses == [401] * 5 + [429] * 3
        # Refused before any secret is checked: even a right secret from this address waits.
        r = stranger.post(
            "/oauth/token", data={**GRANT, "client_id": "made-up", "client_secret": "x"}
        )
        assert_oauth_error(r, 429, "slow_down")
    cred = demo_credentials["district-sis"]
    with from_address(app, "198.51.100.22") as partner:
        r = partner.post(
            "/oauth/token", data=GRANT, auth=(cred["client_id"], cred["client_secret"])
        )
        assert r.status_code == 200, r.text


def test_oauth_errors_are_rfc6749_objects(app, client, demo_credentials):
    cred = demo_credentials["district-sis"]
    r = client.post("/oauth/token", data=GRANT, auth=(cred["client_id"], "wrong"))
    assert_oauth_error(r, 401, "invalid_client")
    r = client.post(
        "/oauth/token",
        data={"grant_type": "password"},
        auth=(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 400 and "error" in r.json()
    # Errors raised outside Authlib's own handling are in the same form: a body too large...
    r = client.post(
        "/oauth/token",
        content=b"a=" + b"x" * (2 << 20),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413 and r.json()["error"] == "invalid_request"
    # ... or a method the endpoint does not allow.
    r = client.get("/oauth/token")
    assert r.status_code == 405 and r.json()["error"] == "invalid_request"
