"""Every integer parameter of the API is bounded in its schema: an out-of-range value is a 4xx
problem document, never a 500 (a 65-bit integer used to overflow the database driver)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

CALLERS = ("county-auditor", "backbone-manager", "backbone-admin", "district-data-manager")
HUGE = (2**64 + 1, -(2**64) - 1, 2**63, 10**30)


def _schema_type(schema: dict[str, Any]) -> set[str]:
    if "type" in schema:
        return {schema["type"]}
    out: set[str] = set()
    for option in schema.get("anyOf", []):
        out |= _schema_type(option)
    return out


def _integer_parameters(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str]]:
    found = []
    for path, item in openapi["paths"].items():
        for method, op in item.items():
            params = op.get("parameters", [])
            for param in params:
                if param["in"] in ("path", "query") and "integer" in _schema_type(param["schema"]):
                    found.append((method, path, op, param["name"]))
    return found


def _fill(path: str, op: dict[str, Any], name: str, value: int) -> tuple[str, dict[str, Any]]:
    query: dict[str, Any] = {}
    for param in op.get("parameters", []):
        pname, where = param["name"], param["in"]
        v: Any = value if pname == name else 1
        if pname != name and "integer" not in _schema_type(param["schema"]):
            v = "x"
        if where == "path":
            path = path.replace("{" + pname + "}", str(v))
        elif where == "query" and (pname == name or param.get("required")):
            query[pname] = v
    return path, query


def test_every_integer_parameter_declares_its_bounds(client):
    openapi = client.get("/openapi.json").json()
    params = _integer_parameters(openapi)
    assert len(params) >= 10
    for method, path, op, name in params:
        schema = next(p for p in op["parameters"] if p["name"] == name)["schema"]
        options = schema.get("anyOf", [schema])
        integer = next(o for o in options if o.get("type") == "integer")
        assert "maximum" in integer and "minimum" in integer, (method, path, name)
        assert integer["maximum"] < 2**63, (method, path, name)


def test_out_of_range_integers_are_a_problem_document_never_a_500(api, client):
    openapi = client.get("/openapi.json").json()
    checked = 0
    for method, path, op, name in _integer_parameters(openapi):
        for value in HUGE:
            url, query = _fill(path, op, name, value)
            statuses = []
            for caller in CALLERS:
                r = client.request(method.upper(), url, params=query, headers=api.headers(caller))
                assert 400 <= r.status_code < 500, (method, url, query, r.status_code, r.text)
                assert r.headers["content-type"].startswith("application/problem+json"), r.text
                assert r.json()["type"].startswith("/problems/")
                statuses.append(r.status_code)
            # ... and for at least one caller it is the bound that refused it.
            assert 422 in statuses, (method, url, query, statuses)
            checked += 1
    assert checked >= 40


@pytest.mark.parametrize("version", [2**31, 2**64 + 1])
def test_an_out_of_range_version_in_a_body_is_a_422(api, version):
    r = api.post(
        "/v1/agreements/district-early-learning-outcomes/approve",
        as_="district-data-manager",
        json={"version": version, "content_hash": "x"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "/problems/validation-error"


def test_an_agreement_field_length_beyond_any_value_is_refused_by_the_schema(api):
    from tests.records.helpers import agreement_document

    # A deep copy: the helper's field descriptors are shared module data.
    document = copy.deepcopy(agreement_document("bounded-lengths"))
    document["datasets"][0]["fields"][0].setdefault("constraints", {})["maxLength"] = 2**70
    r = api.post(
        "/v1/agreements/lint",
        as_="district-data-manager",
        json=document,
    )
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "/problems/invalid-agreement"
