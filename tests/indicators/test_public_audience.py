"""The public as an audience of releases: what it reads without a token, and what it is not told.

The demo publishes readiness, enrollment and chronic absenteeism to the public (the district
agreement names ``public`` among its recipients); low birth weight and readiness after pre-K
stay with the named organizations."""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from importlib import resources
from typing import Any

import pytest
import yaml

from aggregation import reads, review
from core.context import RequestContext
from core.errors import PolicyDenied
from policy.model import PUBLIC, PUBLIC_PRINCIPAL, Principal
from tests.identity.test_oauth import _claims, _sign

PUBLIC_INDICATORS = ["chronic-absenteeism", "kindergarten-enrollment", "kindergarten-readiness"]
SDMX = "application/vnd.sdmx.data+csv; version=2.0.0"


def _ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()]


def _release(api: Any, indicator: str, reader: str = "backbone-dashboard") -> str:
    return _ids(api.get(f"/v1/indicators/{indicator}/releases", as_=reader))[0]


def _same_refusal(a: Any, b: Any) -> None:
    """Two answers a caller cannot tell apart (but for the request id)."""
    assert a.status_code == b.status_code == 401
    assert (
        a.headers["www-authenticate"] == b.headers["www-authenticate"] == 'Bearer realm="backbone"'
    )

    def body(r: Any) -> dict[str, Any]:
        return {k: v for k, v in r.json().items() if k not in ("instance", "request_id")}

    assert body(a) == body(b)
    assert body(a)["type"].endswith("/invalid-token")


def _events(api: Any, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/v1/audit/events", as_="county-auditor", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_the_public_lists_only_public_indicators_and_releases(api):
    anonymous = api.client
    assert sorted(_ids(anonymous.get("/v1/indicators"))) == PUBLIC_INDICATORS
    # An authenticated reader still sees every definition.
    assert set(PUBLIC_INDICATORS) < set(_ids(api.get("/v1/indicators", as_="health-dashboard")))
    one = anonymous.get("/v1/indicators/kindergarten-readiness")
    assert one.status_code == 200 and PUBLIC in one.json()["recipients"]
    releases = anonymous.get("/v1/indicators/chronic-absenteeism/releases").json()
    assert len(releases) == 3 and {r["state"] for r in releases} == {review.PUBLISHED}
    assert {r["method"] for r in releases} == {"suppression", "differential_privacy"}
    assert _ids(anonymous.get("/v1/indicators/chronic-absenteeism/releases")) == _ids(
        api.get("/v1/indicators/chronic-absenteeism/releases", as_="district-dashboard")
    )


def test_the_demo_publishes_chronic_absenteeism_to_the_public_by_differential_privacy(api):
    (dp,) = [
        r
        for r in api.client.get("/v1/indicators/chronic-absenteeism/releases").json()
        if r["method"] == "differential_privacy"
    ]
    assert dp["dimensions"] == ["school_year", "grade"] and dp["parameters"]["epsilon"] == 1.0
    body = api.client.get(f"/v1/releases/{dp['id']}", params={"page_size": 10000}).json()
    names = [h["name"] for h in body["headers"]]
    cells = [dict(zip(names, row, strict=True)) for row in body["rows"]]
    assert len(cells) == 6 * 5 and {c["status"] for c in cells} <= {"dp", "low_reliability"}
    (total,) = [c for c in cells if c["school_year"] == "_T" and c["grade"] == "_T"]
    # The numerator counts the derived flag (chronically absent), about a quarter of the
    # students, not everyone: true for any draw of noise at this size.
    assert 0 < total["numerator"] < 0.6 * total["denominator"]


def test_a_non_public_indicator_is_answered_as_an_unknown_one(api):
    anonymous = api.client
    for path in ("", "/releases", "/series"):
        _same_refusal(
            anonymous.get(f"/v1/indicators/low-birth-weight{path}"),
            anonymous.get(f"/v1/indicators/no-such-indicator{path}"),
        )
        assert (
            api.get(f"/v1/indicators/low-birth-weight{path}", as_="health-dashboard").status_code
            == 200
        )


def test_the_public_reads_a_public_release_in_every_format(api):
    rid = _release(api, "kindergarten-readiness")
    anonymous = api.client
    r = anonymous.get(f"/v1/releases/{rid}")
    assert r.status_code == 200, r.text
    assert r.json() == api.get(f"/v1/releases/{rid}", as_="district-dashboard").json()
    # Every read is authorized and audited again: no shared cache may answer it.
    assert r.headers["cache-control"] == "private, no-cache"
    again = anonymous.get(f"/v1/releases/{rid}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    rows = list(
        csv.DictReader(
            io.StringIO(anonymous.get(f"/v1/releases/{rid}", headers={"Accept": "text/csv"}).text)
        )
    )
    assert rows and {"school_year", "value", "status"} <= set(rows[0])
    sdmx = anonymous.get(f"/v1/releases/{rid}", headers={"Accept": SDMX})
    assert sdmx.status_code == 200 and sdmx.headers["content-type"].startswith(
        "application/vnd.sdmx.data+csv"
    )


def test_a_non_public_release_is_answered_as_an_unknown_one(api):
    linked = _release(api, "readiness-after-prek", "district-dashboard")
    births = _release(api, "low-birth-weight", "health-dashboard")
    anonymous = api.client
    unknown = anonymous.get("/v1/releases/rel_doesnotexist")
    for rid in (linked, births):
        _same_refusal(anonymous.get(f"/v1/releases/{rid}"), unknown)
        _same_refusal(anonymous.get(f"/v1/releases/{rid}", headers={"Accept": "text/csv"}), unknown)
    # The same answer as a request without a token to an endpoint that always needs one.
    _same_refusal(anonymous.get("/v1/budgets"), unknown)
    assert api.get(f"/v1/releases/{linked}", as_="district-dashboard").status_code == 200


def test_a_token_that_is_sent_must_be_valid(api, session, demo_credentials):
    rid = _release(api, "kindergarten-readiness")
    anonymous = api.client
    bad = anonymous.get(f"/v1/releases/{rid}", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    now = int(time.time())
    expired = _sign(
        session,
        {"alg": "ES256", "typ": "at+jwt"},
        {**_claims(api, "backbone-dashboard"), "iat": now - 900, "exp": now - 600},
    )
    for path in (
        f"/v1/releases/{rid}",
        "/v1/indicators",
        "/v1/indicators/kindergarten-readiness/series",
    ):
        r = anonymous.get(path, headers={"Authorization": f"Bearer {expired}"})
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert anonymous.get(f"/v1/releases/{rid}", headers={"Authorization": ""}).status_code == 401
    token = api.token("backbone-dashboard")
    cred = demo_credentials["backbone-dashboard"]
    revoked = anonymous.post(
        "/oauth/revoke", data={"token": token}, auth=(cred["client_id"], cred["client_secret"])
    )
    assert revoked.status_code == 200
    r = anonymous.get(f"/v1/releases/{rid}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


def test_an_organization_that_is_not_a_named_recipient_reads_a_public_release(api):
    admin = "backbone-admin"
    r = api.post(
        "/v1/organizations",
        as_=admin,
        json={"id": "riverton-library", "name": "Riverton Public Library", "kind": "partner"},
    )
    assert r.status_code == 201, r.text
    r = api.post(
        "/v1/clients",
        as_=admin,
        json={"organization": "riverton-library", "name": "library kiosk", "role": "dashboard"},
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    api.credentials[issued["client_id"]] = issued
    reader = issued["client_id"]
    public_release = _release(api, "kindergarten-readiness")
    linked = _release(api, "readiness-after-prek", "district-dashboard")
    assert api.get(f"/v1/releases/{public_release}", as_=reader).status_code == 200
    # Not a recipient of a release that is not public: refused as before.
    assert api.get(f"/v1/releases/{linked}", as_=reader).status_code == 403
    assert _ids(api.get("/v1/indicators/readiness-after-prek/releases", as_=reader)) == []
    assert _ids(api.get("/v1/indicators/kindergarten-readiness/releases", as_=reader))
    series = api.get("/v1/indicators/kindergarten-readiness/series", as_=reader)
    assert series.status_code == 200 and series.json()["points"]
    reads_ = [
        e
        for e in _events(api, action="release.read", organization="riverton-library")
        if e["resource_id"] == public_release
    ]
    # The reader is recorded as itself; the decision was made for the public.
    assert reads_ and reads_[0]["organization"] == "riverton-library"


def test_no_organization_may_be_called_public(api):
    r = api.post(
        "/v1/organizations",
        as_="backbone-admin",
        json={"id": PUBLIC, "name": "Everyone", "kind": "partner"},
    )
    assert r.status_code == 422 and "reserved" in r.json()["detail"]


def _define(api: Any, recipients: list[str]) -> None:
    body = {
        "id": "absenteeism-by-year",
        "title": "Chronic absenteeism by school year",
        "unit": "percent",
        "direction": "decrease",
        "purpose": "dpv:PublicBenefit",
        "recipients": recipients,
        "numerator": {"dataset": "attendance", "filter": "chronically_absent"},
        "denominator": {"dataset": "attendance"},
        "dimensions": ["school_year"],
        "period_dimension": "school_year",
    }
    r = api.post("/v1/indicators", as_="backbone-manager", json=body)
    assert r.status_code == 201, r.text


def _publish(api: Any) -> str:
    r = api.post(
        "/v1/indicators/absenteeism-by-year/releases",
        as_="backbone-manager",
        json={"dimensions": ["school_year"]},
    )
    assert r.status_code == 201, r.text
    rid: str = r.json()["id"]
    return rid


def test_the_public_series_uses_only_public_releases(api, clock):
    named = ["district", "backbone"]
    _define(api, [*named, PUBLIC])
    public_release = _publish(api)
    clock.advance(seconds=5)
    _define(api, named)
    private_release = _publish(api)
    # The indicator is public again; its newest release is not.
    _define(api, [*named, PUBLIC])
    anonymous = api.client
    mine = api.get("/v1/indicators/absenteeism-by-year/series", as_="district-dashboard").json()
    assert mine["releases"] == [private_release]
    r = anonymous.get("/v1/indicators/absenteeism-by-year/series")
    assert r.status_code == 200, r.text
    theirs = r.json()
    assert theirs["releases"] == [public_release]
    assert theirs["points"] and {p["release"] for p in theirs["points"]} == {public_release}
    assert [p["period"] for p in theirs["points"]] == [p["period"] for p in mine["points"]]
    assert _ids(anonymous.get("/v1/indicators/absenteeism-by-year/releases")) == [public_release]
    _same_refusal(
        anonymous.get(f"/v1/releases/{private_release}"), anonymous.get("/v1/releases/rel_nope")
    )
    # An organization that is not a named recipient of the newest release reads the public ones.
    health = api.get("/v1/indicators/absenteeism-by-year/series", as_="health-dashboard").json()
    assert health["releases"] == [public_release]
    series = [
        e
        for e in _events(api, action="release.read", organization=PUBLIC)
        if e["resource_type"] == "indicator_series" and e["resource_id"] == "absenteeism-by-year"
    ]
    assert series and series[0]["outcome"] == "succeeded" and series[0]["client"] == PUBLIC


def test_the_public_series_is_refused_when_no_release_is_public(api):
    _define(api, ["district", "backbone"])
    _publish(api)
    _define(api, ["district", "backbone", PUBLIC])
    anonymous = api.client
    _same_refusal(
        anonymous.get("/v1/indicators/absenteeism-by-year/series"),
        anonymous.get("/v1/indicators/no-such-indicator/series"),
    )
    assert api.get("/v1/indicators/absenteeism-by-year/series", as_="district-dashboard").json()[
        "points"
    ]
    refused = [
        e
        for e in _events(api, action="release.read", outcome="denied", organization=PUBLIC)
        if e["resource_id"] == "absenteeism-by-year"
    ]
    assert refused, "a refused read by the public is audited"


def test_anonymous_reads_are_audited_as_the_public(api):
    rid = _release(api, "chronic-absenteeism")
    anonymous = api.client
    assert anonymous.get(f"/v1/releases/{rid}").status_code == 200
    assert anonymous.get("/v1/indicators/chronic-absenteeism/series").status_code == 200
    events = _events(api, action="release.read", organization=PUBLIC)
    by_resource = {(e["resource_type"], e["resource_id"]): e for e in events}
    release_read = by_resource[("release", rid)]
    assert release_read["client"] == PUBLIC and release_read["outcome"] == "succeeded"
    assert release_read["decision"] == "permit" and release_read["agreements"]
    assert ("indicator_series", "chronic-absenteeism") in by_resource
    # The log with these events still verifies.
    export = api.get("/v1/audit/export", as_="county-auditor")
    assert export.status_code == 200


def test_a_held_or_objected_public_release_is_not_readable_by_the_public(api, app, session):
    st = app.state.backbone
    rid = _release(api, "kindergarten-readiness")
    policy = st.policies.get(session)
    view = st.release_views.load(session, rid)
    now = st.clock()
    public = RequestContext("req-public", now, PUBLIC_PRINCIPAL)
    assert reads.authorize_read(public, policy, view).permitted
    for state in (review.PENDING, "objected"):
        held = dataclasses.replace(view, state=state)
        with pytest.raises(review.ReleaseNotPublished):
            reads.authorize_read(public, policy, held)
    private = dataclasses.replace(view, recipients=view.recipients - {PUBLIC})
    with pytest.raises(PolicyDenied):
        reads.authorize_read(public, policy, private)
    stranger = RequestContext("req-x", now, Principal("kiosk", "riverton-library", "partner"))
    assert reads.authorize_read(stranger, policy, view).permitted
    with pytest.raises(PolicyDenied):
        reads.authorize_read(stranger, policy, private)


def test_anonymous_reads_are_rate_limited_by_address(api_with):
    with api_with(public_read_rate_limit="2/minute") as api:
        anonymous = api.client
        assert anonymous.get("/v1/indicators").status_code == 200
        assert anonymous.get("/v1/indicators").status_code == 200
        limited = anonymous.get("/v1/indicators")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # A token-holding reader is counted by its own allowance, not the address's.
        assert api.get("/v1/indicators", as_="district-dashboard").status_code == 200


def test_openapi_shows_the_reads_as_optionally_authenticated(client):
    doc = client.get("/openapi.json").json()
    optional = [
        ("/v1/releases/{release_id}", "get"),
        ("/v1/indicators", "get"),
        ("/v1/indicators/{indicator_id}", "get"),
        ("/v1/indicators/{indicator_id}/releases", "get"),
        ("/v1/indicators/{indicator_id}/series", "get"),
    ]
    for path, method in optional:
        op = doc["paths"][path][method]
        assert {} in op["security"] and {"oauth2": ["indicators:read"]} in op["security"]
        assert {"401", "429"} <= set(op["responses"])
    for path, method in [
        ("/v1/indicators", "post"),
        ("/v1/indicators/{indicator_id}/releases", "post"),
        ("/v1/budgets", "get"),
    ]:
        assert {} not in doc["paths"][path][method]["security"]


def _demo_definition(indicator: str) -> dict[str, Any]:
    text = (resources.files("demo") / "indicators" / "indicators.yaml").read_text()
    found: dict[str, Any] = next(i for i in yaml.safe_load(text) if i["id"] == indicator)
    return found


def test_an_indicator_for_the_public_needs_every_agreement_to_name_it(api):
    # Low birth weight: the health agreement does not publish to the public.
    births = {**_demo_definition("low-birth-weight"), "id": "births-for-everyone"}
    births["recipients"] = [*births["recipients"], PUBLIC]
    r = api.post("/v1/indicators", as_="backbone-manager", json=births)
    assert r.status_code == 403, r.text
    failed = r.json()["decision"]["failed_constraints"]
    assert {(f["agreement"], f["left_operand"]) for f in failed} == {
        ("health-birth-outcomes", "recipient")
    }
    # Readiness after pre-K: the district agreement names the public, the early-learning
    # network's does not, so the cross-partner indicator cannot be published to it.
    linked = {**_demo_definition("readiness-after-prek"), "id": "linked-for-everyone"}
    linked.pop("performance", None)  # the indicator, not the network's performance measure
    linked["recipients"] = [*linked["recipients"], PUBLIC]
    r = api.post("/v1/indicators", as_="backbone-manager", json=linked)
    assert r.status_code == 403, r.text
    failed = r.json()["decision"]["failed_constraints"]
    assert {f["agreement"] for f in failed if f["left_operand"] == "recipient"} == {
        "early-learning-enrollment"
    }
    assert (
        api.get("/v1/indicators/linked-for-everyone", as_="backbone-dashboard").status_code == 404
    )
    # The district's own data: permitted.
    readiness = {**_demo_definition("kindergarten-readiness"), "id": "readiness-for-everyone"}
    r = api.post("/v1/indicators", as_="backbone-manager", json=readiness)
    assert r.status_code == 201 and PUBLIC in r.json()["recipients"]
