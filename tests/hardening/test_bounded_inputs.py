"""Requests whose cost is not bounded by their size: JSON bodies (depth, width), agreement
documents (size, depth, aliases), filter expressions (nesting), query strings (filters). Each is
refused with a 4xx before a recursive parser or a quadratic loop sees it."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agreements.errors import InvalidAgreement
from agreements.expressions import InvalidExpression, compile_filter
from agreements.parse import parse_document
from core.jsonscan import shape

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{},"\\:ab '),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet='[]{},"\\ab', max_size=4), children, max_size=4)
    ),
    max_leaves=30,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_the_scan_measures_depth_as_a_parser_would(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert shape(text.encode()).depth == _depth(value)


def test_the_scan_is_linear_in_the_worst_bodies():
    for body in (b"[" * 1_000_000, b'"' + b'\\"' * 500_000 + b'"', b"[" + b"0," * 500_000 + b"0]"):
        started = time.perf_counter()
        shape(body)
        assert time.perf_counter() - started < 5  # about 0.1 s: a quadratic scan takes hours


@pytest.mark.parametrize(
    "body",
    [
        b'{"action": "submit", "draft": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        b'{"action": "submit", "draft": {"a": [' + b"0," * 150_000 + b"0]}}",
    ],
    ids=["deep", "wide"],
)
def test_a_json_body_too_deep_or_too_wide_is_refused_before_parsing(api, body):
    r = api.post(
        "/v1/policy/decide",
        as_="district-data-manager",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "/problems/json-too-complex"


def test_an_ordinary_json_body_still_works(api):
    r = api.post(
        "/v1/policy/decide",
        as_="district-data-manager",
        json={"action": "submit", "resource": {"datasets": ["kindergarten_readiness"]}},
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("ctype", ["application/x-ndjson", "application/json"])
def test_a_deeply_nested_record_is_refused_before_polars_reads_it(api, ctype):
    # polars' NDJSON reader crashed the process on this (a segmentation fault).
    nested = b'{"student_id": ' + b"[" * 300_000 + b"]" * 300_000 + b"}"
    body = nested + b"\n" if ctype.endswith("ndjson") else b"[" + nested + b"]"
    r = api.post(
        "/v1/datasets/kindergarten_readiness/submissions",
        as_="district-sis",
        content=body,
        headers={"Content-Type": ctype},
    )
    assert r.status_code == 400, r.text
    assert "flat" in r.json()["detail"]


def test_yaml_aliases_are_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    with pytest.raises(InvalidAgreement) as caught:
        parse_document(bomb, "yaml")
    assert caught.value.extra["findings"][0]["code"] == "limit"


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_deep_agreement_documents_are_refused(fmt):
    deep = "[" * 50_000 + "]" * 50_000
    text = f"uid: {deep}" if fmt == "yaml" else '{"uid": ' + deep + "}"
    with pytest.raises(InvalidAgreement) as caught:
        parse_document(text, fmt)
    assert caught.value.extra["findings"][0]["code"] == "limit"


def test_a_deep_agreement_is_a_422_over_http(api):
    r = api.post(
        "/v1/agreements/lint",
        as_="district-data-manager",
        content=("uid: " + "[" * 20_000 + "]" * 20_000).encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "/problems/invalid-agreement"


def test_a_non_utf8_agreement_is_a_422(api):
    r = api.post(
        "/v1/agreements/lint",
        as_="district-data-manager",
        content=b"uid: \xff\xfe",
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 422, r.text


FIELDS = [("a", "integer", "measure"), ("b", "boolean", "measure")]


@pytest.mark.parametrize(
    "text",
    [
        "(" * 995 + "a > 1" + ")" * 995,
        "not " * 490 + "b",
        "- " * 990 + "a > 1",
        " + ".join(["a"] * 900) + " > 1",
    ],
    ids=["parentheses", "not", "negation", "long-sum"],
)
def test_filter_expressions_are_bounded_in_depth_and_length(text):
    with pytest.raises(InvalidExpression):
        compile_filter(text, FIELDS)


def test_ordinary_filter_expressions_still_compile():
    compile_filter("(" * 10 + "a >= 0.1 * a" + ")" * 10 + " and not b", FIELDS)


@pytest.fixture
def release_id(api) -> str:
    """The demo's readiness release by school year and neighborhood."""
    for item in api.get(
        "/v1/indicators/kindergarten-readiness/releases", as_="backbone-dashboard"
    ).json():
        if item["dimensions"] == ["school_year", "neighborhood"]:
            return str(item["id"])
    raise AssertionError("the demo publishes readiness by school year and neighborhood")


def test_release_filters_are_bounded_and_name_the_valid_dimensions(api, release_id):
    url = f"/v1/releases/{release_id}"
    r = api.get(url, as_="backbone-dashboard", params={"filter": "shoe_size:9"})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "'shoe_size'" in detail and "neighborhood" in detail and "school_year" in detail
    many = [f"neighborhood:n{i}" for i in range(50)]
    r = api.get(url, as_="backbone-dashboard", params={"filter": many})
    assert r.status_code == 422 and "At most" in r.json()["detail"]
    wide = "neighborhood:" + ",".join(f"n{i}" for i in range(5_000))
    r = api.get(url, as_="backbone-dashboard", params={"filter": wide})
    assert r.status_code == 422 and "at most" in r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "caller"),
    [
        ("GET", "/v1/agreements/a%00b", "district-data-manager"),
        ("GET", "/v1/submissions/a%00b", "district-sis"),
        ("GET", "/v1/indicators/a%00b", "backbone-dashboard"),
        ("GET", "/v1/audit/events?organization=a%00b", "county-auditor"),
        ("GET", "/v1/submissions?after=a%00b", "district-sis"),
        ("POST", "/v1/datasets/a%00b/submissions", "district-sis"),
    ],
)
def test_a_nul_character_in_a_path_or_query_is_a_4xx(api, client, method, path, caller):
    # PostgreSQL refuses NUL in text: this was a 500 there.
    r = client.request(
        method, path, headers={**api.headers(caller), "Content-Type": "text/csv"}, content=b"a\n"
    )
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "/problems/invalid-input"


def test_a_nul_character_in_a_json_body_a_form_or_an_agreement_is_a_4xx(api, client):
    r = api.post(
        "/v1/policy/decide",
        as_="district-data-manager",
        content=b'{"action": "sub\\u0000mit"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    r = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "a\x00"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text
    with pytest.raises(InvalidAgreement):
        parse_document('uid: "a\\0b"\n', "yaml")
    with pytest.raises(InvalidAgreement):
        parse_document('{"uid": "a\x00b"}', "json")
