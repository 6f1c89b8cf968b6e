"""Two Backbone instances sharing one PostgreSQL and one Redis behave as one service.

The topology of a deployment on several machines, started on this one: two ``backbone serve``
processes on different ports, with the same database, the same public URL (``BACKBONE_ISSUER``,
which a reverse proxy in front of them would answer) and the same Redis for rate limits. A token
issued by one is accepted by the other, a revocation on one applies on the other within
``BACKBONE_AUTH_SYNC_SECONDS``, a client's rate limit is spent across both, and a release
computed on one is read, identical, on the other.

Needs PostgreSQL (an embedded SQLite file is not shared between machines) and Redis: skipped
with a notice where either is missing, required where ``BACKBONE_TEST_REQUIRE_POSTGRES`` and
``BACKBONE_TEST_REQUIRE_REDIS`` are set, as in CI.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import BACKEND, FreshDatabase
from tests.test_cli_commands import Deployment, Server, _free_port, serve, work

pytestmark = [pytest.mark.process, pytest.mark.slow]

REDIS = os.environ.get("BACKBONE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SYNC_SECONDS = 0.2


def _redis_reachable(url: str) -> bool:
    rest = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def pair(
    fresh_databases: FreshDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Deployment, Deployment]]:
    if BACKEND != "postgres":
        pytest.skip("two instances share a PostgreSQL database; run with BACKBONE_TEST_DATABASE")
    if not _redis_reachable(REDIS):
        if os.environ.get("BACKBONE_TEST_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis is required but not reachable at {REDIS}")
        pytest.skip(f"Redis is not reachable at {REDIS}; set BACKBONE_TEST_REDIS_URL")
    root = tmp_path_factory.mktemp("two-instances")
    url = fresh_databases.url()
    a = Deployment(url, root / "var", _free_port(), root)
    b = Deployment(url, root / "var", _free_port(), root)
    a.run("migrate")
    a.run("seed-demo")
    shared = {
        # What a reverse proxy in front of both would answer: one issuer, one audit log name.
        "BACKBONE_ISSUER": a.base,
        "BACKBONE_RATE_LIMIT_STORAGE": REDIS,
        "BACKBONE_AUTH_SYNC_SECONDS": str(SYNC_SECONDS),
        "BACKBONE_TOKEN_RATE_LIMIT": "6/minute",
        "BACKBONE_RELEASE_TIME_QUANTUM": "0",
        # Every release is a job on the queue in PostgreSQL, taken by the worker.
        "BACKBONE_RELEASE_SYNC_SECONDS": "0",
    }
    servers: list[Server] = []
    try:
        for dep in (a, b):
            servers.append(serve(dep, **shared))
        servers.append(work(a, **shared))
        yield a, b
    finally:
        for server in servers:
            server.stop()


def _token(dep: Deployment, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{dep.base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=60,
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_from_one_instance_works_on_the_other_until_revoked(pair):
    a, b = pair
    cred = a.credentials()["backbone-dashboard"]
    issued = _token(a, "backbone-dashboard", cred["client_secret"])
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    assert httpx.get(f"{b.base}/v1/whoami", headers=_bearer(token), timeout=60).status_code == 200

    revoked = httpx.post(
        f"{a.base}/oauth/revoke",
        data={"token": token},
        auth=("backbone-dashboard", cred["client_secret"]),
        timeout=60,
    )
    assert revoked.status_code == 200, revoked.text
    # Refused on the instance that revoked it at once, on the other within the sync interval.
    assert httpx.get(f"{a.base}/v1/whoami", headers=_bearer(token), timeout=60).status_code == 401
    started = time.monotonic()
    while True:
        status = httpx.get(f"{b.base}/v1/whoami", headers=_bearer(token), timeout=60).status_code
        if status == 401:
            break
        assert status == 200
        # The documented delay, with room for a loaded machine.
        assert time.monotonic() - started < SYNC_SECONDS + 5, "revocation not followed"
        time.sleep(0.05)


def test_a_client_spends_one_rate_limit_across_both_instances(pair):
    a, b = pair
    # A client of its own, so that no other test spends its allowance.
    name = f"two-{uuid.uuid4().hex[:8]}"
    a.run("org", "create", name, "Two instances", "--kind", "partner")
    issued = json.loads(
        a.run("client", "create", name, "its system", "--role", "partner-system").stdout
    )
    client_id, secret = issued["client_id"], issued["client_secret"]
    statuses = [_token(dep, client_id, secret).status_code for dep in (a, b, a, b, a, b)]
    assert statuses == [200] * 6
    # Six a minute in all: the seventh is refused whichever instance it reaches.
    refused = [_token(dep, client_id, secret) for dep in (a, b)]
    assert [r.status_code for r in refused] == [429, 429]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)


def test_a_release_computed_on_one_instance_is_read_on_the_other(pair):
    a, b = pair
    creds = a.credentials()
    manager = _token(a, "backbone-manager", creds["backbone-manager"]["client_secret"])
    token = manager.json()["access_token"]
    made = httpx.post(
        f"{a.base}/v1/indicators/kindergarten-enrollment/releases",
        json={"dimensions": ["school_year"]},
        headers=_bearer(token),
        timeout=300,
    )
    # Requested on one instance, computed by the worker that takes the job from the queue, and
    # followed on the other instance.
    assert made.status_code == 202, made.text
    assert made.headers["Location"] == f"/v1/jobs/{made.json()['id']}"
    deadline = time.monotonic() + 300
    while True:
        job = httpx.get(f"{b.base}{made.headers['Location']}", headers=_bearer(token), timeout=60)
        assert job.status_code == 200, job.text
        if job.json()["state"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, job.text
        time.sleep(0.2)
    assert job.json()["state"] == "succeeded", job.text
    release = job.json()["release"]["id"]
    here = httpx.get(f"{a.base}/v1/releases/{release}", headers=_bearer(token), timeout=60)
    there = httpx.get(f"{b.base}/v1/releases/{release}", headers=_bearer(token), timeout=60)
    assert here.status_code == there.status_code == 200
    assert here.json()["rows"] == there.json()["rows"]
    assert here.json()["id"] == there.json()["id"] == release
