"""What a browser and a generated client see: documentation without a CDN, the security
scheme and scopes, every error declared as a problem document, security headers."""

from __future__ import annotations

import re

import pytest

from identity.scopes import SCOPES


def test_docs_load_their_assets_from_the_service_itself(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "cdn" not in page.lower() and "https://" not in page and "http://" not in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("/docs/") for s in sources)
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 0
    assert "<script>" not in page  # no inline script: the CSP allows none
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert client.get("/docs/assets/../../etc/passwd").status_code == 404
    assert client.get("/docs/assets/swagger-editor.js").status_code == 404


def test_openapi_declares_the_client_credentials_scheme_and_each_operations_scopes(client):
    doc = client.get("/openapi.json").json()
    scheme = doc["components"]["securitySchemes"]["oauth2"]
    flow = scheme["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth/token" and set(flow["scopes"]) == set(SCOPES)
    ops = {(m, p): op for p, item in doc["paths"].items() for m, op in item.items()}
    assert ops[("post", "/v1/datasets/{dataset}/submissions")]["security"] == [
        {"oauth2": ["records:write"]}
    ]
    assert ops[("get", "/v1/audit/events")]["security"] == [{"oauth2": ["audit:read"]}]
    assert ops[("get", "/v1/agreements/schema")]["security"] == [{"oauth2": ["agreements:read"]}]
    assert "security" not in ops[("get", "/v1/audit/public-key")]
    assert "security" not in ops[("post", "/oauth/token")]


def test_every_error_is_declared_as_a_problem_document(client):
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "Problem" in schemas
    assert "HTTPValidationError" not in str(doc)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            errors = {c: r for c, r in responses.items() if c[0] in "45"}
            assert "503" in errors, (method, path)
            if "security" in op:
                assert {"401", "403"} <= set(errors), (method, path)
            if op.get("parameters") or "requestBody" in op:
                assert "422" in errors, (method, path)
            for code, response in errors.items():
                media = (
                    "application/json" if path.startswith("/oauth/") else "application/problem+json"
                )
                assert set(response["content"]) == {media}, (method, path, code)


def test_a_422_is_a_problem_document_as_declared(api):
    r = api.get("/v1/audit/events?limit=0", as_="county-auditor")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "/problems/validation-error"


def test_the_agreement_schema_needs_agreements_read_as_the_readme_says(client, api):
    assert client.get("/v1/agreements/schema").status_code == 401
    assert api.get("/v1/agreements/schema", as_="district-sis").status_code == 403
    assert api.get("/v1/agreements/schema", as_="district-data-manager").status_code == 200


@pytest.mark.parametrize(
    "path", ["/healthz", "/openapi.json", "/docs", "/v1/whoami", "/nowhere", "/problems"]
)
def test_security_headers_on_every_response(client, path):
    r = client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "server" not in r.headers


def test_authenticated_json_is_not_stored_by_caches(api):
    r = api.get("/v1/whoami", as_="district-sis")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    r = api.get("/v1/submissions", as_="district-sis")
    assert r.headers["cache-control"] == "no-store"
    r = api.get("/v1/nowhere", as_="district-sis")
    assert r.status_code == 404 and r.headers["cache-control"] == "no-store"


@pytest.mark.process
def test_the_server_command_sends_no_banner(fresh_databases, tmp_path):
    """``backbone serve`` (uvicorn adds its banner below the application: configured off)."""
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    from migrations.commands import upgrade

    url = fresh_databases.url()
    upgrade(url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {
        **os.environ,
        "BACKBONE_DATABASE_URL": url,
        "BACKBONE_DATA_DIR": str(tmp_path),
        "BACKBONE_ISSUER": f"http://127.0.0.1:{port}",
        "BACKBONE_LOG_LEVEL": "WARNING",
    }
    backbone = Path(sys.executable).parent / "backbone"
    proc = subprocess.Popen(
        [str(backbone), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "the server exited"
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert r.status_code == 200
        assert "server" not in r.headers
        assert r.headers["x-content-type-options"] == "nosniff"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_every_operation_declares_a_typed_success_response(client):
    doc = client.get("/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            successes = {c: r for c, r in op["responses"].items() if c.startswith("2")}
            assert successes, (method, path)
            for code, response in successes.items():
                for media, body in response.get("content", {}).items():
                    schema = body.get("schema", {})
                    if media in ("application/json", "application/ld+json"):
                        union = schema.get("anyOf", [])  # one of several named models
                        typed = (
                            "$ref" in schema
                            or "$ref" in schema.get("items", {})
                            or (bool(union) and all("$ref" in s for s in union))
                        )
                        assert typed, (method, path, code, media, schema)
