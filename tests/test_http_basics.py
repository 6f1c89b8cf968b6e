"""Operations endpoints and the RFC 9457 error contract for bad requests."""

from __future__ import annotations

from sqlalchemy import func, select

from audit.models import AuditEvent
from identity.models import Organization


def _is_problem(r, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"/problems/{kind}"
    assert body["status"] == status
    assert body["title"]
    assert body["request_id"] == r.headers["x-request-id"]
    return body


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "migrations": "ok", "audit_log": "ok"}


def test_every_response_has_a_request_id_and_honours_a_sane_incoming_one(client):
    assert len(client.get("/healthz").headers["x-request-id"]) == 32
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    for bad in ("x" * 65, "a b", "<script>"):
        assert client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"] != bad


def test_docs_and_openapi_are_served(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/datasets/{dataset}/submissions" in spec["paths"]


def test_unknown_route_is_a_404_problem(client):
    _is_problem(client.get("/no/such/thing"), 404, "not-found")


def test_wrong_method_is_a_405_problem_with_allow(client):
    r = client.delete("/healthz")
    _is_problem(r, 405, "method-not-allowed")
    assert "GET" in r.headers["allow"]


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_body_over_the_limit_is_413_and_writes_nothing(api, session, settings):
    orgs, events = _count(session, Organization), _count(session, AuditEvent)
    big = (
        b'{"id": "x", "name": "' + b"a" * (settings.max_body_bytes + 10) + b'", "kind": "partner"}'
    )
    r = api.post(
        "/v1/organizations",
        as_="backbone-admin",
        content=big,
        headers={"Content-Type": "application/json"},
    )
    _is_problem(r, 413, "payload-too-large")
    # Also when the client streams without a Content-Length.
    r = api.post(
        "/v1/organizations",
        as_="backbone-admin",
        content=iter([big[:1000], big[1000:]]),
        headers={"Content-Type": "application/json"},
    )
    _is_problem(r, 413, "payload-too-large")
    assert _count(session, Organization) == orgs
    assert _count(session, AuditEvent) == events + 1  # the token request, nothing else


def test_malformed_json_is_a_400_problem_and_writes_nothing(api, session):
    before = _count(session, Organization)
    r = api.post(
        "/v1/organizations",
        as_="backbone-admin",
        content=b'{"id": "x",',
        headers={"Content-Type": "application/json"},
    )
    _is_problem(r, 400, "malformed-json")
    assert _count(session, Organization) == before


def test_validation_error_lists_fields_without_echoing_values(api):
    r = api.post(
        "/v1/organizations",
        as_="backbone-admin",
        json={"id": "SECRET VALUE 123", "name": "n", "kind": "nope"},
    )
    body = _is_problem(r, 422, "validation-error")
    assert {tuple(e["location"]) for e in body["errors"]} == {("body", "id"), ("body", "kind")}
    assert "SECRET VALUE 123" not in r.text


def test_problem_types_are_documented(client):
    kinds = {p["type"] for p in client.get("/problems").json()}
    assert "/problems/policy-denied" in kinds
    doc = client.get("/problems/payload-too-large").json()
    assert doc["status"] == 413
    _is_problem(client.get("/problems/nope"), 404, "not-found")


def test_unhandled_errors_are_500_problems_with_the_request_id(app, client):
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail that must not leak")

    r = client.get("/boom")
    body = _is_problem(r, 500, "internal-error")
    assert "secret detail" not in r.text
    assert body["request_id"] == r.headers["x-request-id"]
