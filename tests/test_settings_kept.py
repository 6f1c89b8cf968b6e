"""Every setting the README documents is one the service keeps, with a test.

``test_every_documented_setting_is_tested`` reads the README's configuration table and looks for
each variable (or the settings field it sets) in the test suite: a setting documented and never
exercised is how ``BACKBONE_RATE_LIMIT_STORAGE=redis://`` came to be documented for months while
the Redis client was not even installed. The tests below keep the settings no other test did.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from tests.records.test_submissions_api import csv, post, problem

ROOT = Path(__file__).resolve().parent.parent


def _documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"^## Configuration$(.*?)^## ", readme, re.M | re.S)
    assert table is not None, "the README has a Configuration section"
    names: set[str] = set()
    for first_cell in re.findall(r"^\|\s*(.+?)\s*\|", table.group(1), re.M):
        names |= set(re.findall(r"`(BACKBONE_[A-Z0-9_]+)`", first_cell))
    return names


def test_every_documented_setting_is_tested():
    documented = _documented()
    assert len(documented) > 20
    # This function names no setting: the ones below are found as the tests that keep them.
    suite = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    untested = sorted(
        name
        for name in documented
        if name not in suite
        and not re.search(rf"\b{name.removeprefix('BACKBONE_').lower()}\b", suite)
    )
    assert not untested, f"documented in the README, exercised by no test: {untested}"


def test_access_token_ttl_seconds(api_with, demo_credentials):
    with api_with(access_token_ttl_seconds=45) as api:
        cred = demo_credentials["district-sis"]
        r = api.client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(cred["client_id"], cred["client_secret"]),
        )
        assert r.status_code == 200, r.text
        assert r.json()["expires_in"] == 45
        token = r.json()["access_token"]
        seen = api.client.post(
            "/oauth/introspect",
            data={"token": token},
            auth=(cred["client_id"], cred["client_secret"]),
        ).json()
        assert seen["active"] is True and seen["exp"] - seen["iat"] == 45


def test_max_decompression_ratio(api_with):
    # The ratio is checked with one read chunk (1 MiB) of slack: a body well past it, which gzip
    # shrinks about tenfold.
    body = csv(80_000, prefix="DR")
    packed = gzip.compress(body)
    assert len(body) > 3 * 1_048_576 and len(body) / len(packed) > 8
    with api_with(max_decompression_ratio=4) as api:
        problem(post(api, packed, **{"Content-Encoding": "gzip"}), 413, "payload-too-large")
    with api_with(max_decompression_ratio=50) as api:
        r = post(api, packed, **{"Content-Encoding": "gzip"})
        assert r.status_code == 201, r.text


def test_token_failure_rate_limit(api_with):
    with api_with(token_failure_rate_limit="2/minute") as api:
        wrong = ("district-sis", "not-the-secret")
        statuses = [
            api.client.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=wrong
            ).status_code
            for _ in range(3)
        ]
        assert statuses == [401, 401, 429]


def test_write_rate_limit(api_with):
    with api_with(write_rate_limit="2/minute") as api:
        first = post(api, csv(3, prefix="WA"))
        second = post(api, csv(3, prefix="WB"))
        assert (first.status_code, second.status_code) == (201, 201)
        third = post(api, csv(3, prefix="WC"))
        problem(third, 429, "rate-limited")
        assert int(third.headers["Retry-After"]) >= 1
        # Reads are not writes.
        assert api.get("/v1/submissions", as_="district-sis").status_code == 200
