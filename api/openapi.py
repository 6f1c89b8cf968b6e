"""The OpenAPI document as a generated client needs it.

FastAPI's own document is completed here, from the routes themselves:

* the OAuth 2.0 client-credentials security scheme, and on each protected operation the scopes
  its ``require(...)`` dependency checks (all of them are needed); an operation the public may
  call without a token (``require_or_public(...)``) lists the empty requirement as well;
* every error an operation can answer with, as ``application/problem+json`` (RFC 9457), 422
  included in place of FastAPI's ``HTTPValidationError`` (which the service never sends); the
  OAuth endpoints' errors as RFC 6749 error objects.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from identity.scopes import SCOPES

PROBLEM = "application/problem+json"
SCHEME = "oauth2"
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document; `type` is stable per kind (see /problems).",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "examples": ["/problems/not-found"]},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
        "report": {"type": "object"},
        "decision": {"type": "object"},
        "findings": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": True,
}
OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 6749 error object (section 5.2).",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "error_description": {"type": "string"},
    },
    "additionalProperties": True,
}
DESCRIPTIONS = {
    400: "Malformed request: the body could not be parsed",
    401: "Missing, invalid or expired access token (see WWW-Authenticate)",
    403: "The token lacks a scope, or the agreements or object ownership do not allow this",
    404: "No such resource, or it is not visible to you",
    406: "None of the media types in Accept can be produced",
    409: "The resource is not in a state that allows this",
    410: "Gone: the data has been destroyed (crypto-shredded), or the upload expired",
    412: "Tus-Resumable is missing or not 1.0.0 (resumable uploads)",
    413: "The body exceeds the configured limit",
    415: "Unsupported Content-Type or Content-Encoding",
    422: "Parameters or body are invalid (see errors, report or findings)",
    429: "Rate limit exceeded; retry after Retry-After seconds",
    500: "An internal error; quote the request id",
    503: "The database is unavailable; retry after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}


def _requirement(dependant: Dependant) -> tuple[frozenset[str] | None, bool, bool]:
    """The scopes the operation's authentication requires (None: public), whether it counts
    against the write rate limit, and whether the token is optional (served to the public
    without one)."""
    stack = [dependant]
    while stack:
        dep = stack.pop()
        call = dep.call
        scopes = getattr(call, "required_scopes", None)
        if scopes is not None:
            return (
                frozenset(scopes),
                bool(getattr(call, "counts_writes", False)),
                bool(getattr(call, "optional_auth", False)),
            )
        stack.extend(dep.dependencies)
    return None, False, False


def _any_of(dependant: Dependant) -> frozenset[str]:
    """The scopes of which a token must carry one (``api.deps.require_any``), if any."""
    stack = [dependant]
    while stack:
        dep = stack.pop()
        scopes = getattr(dep.call, "any_of_scopes", None)
        if scopes is not None:
            return frozenset(scopes)
        stack.extend(dep.dependencies)
    return frozenset()


def _statuses(
    route: APIRoute, method: str, op: dict[str, Any], scopes: Any, writes: bool, optional: bool
) -> set[int]:
    codes = {503}
    has_params = bool(op.get("parameters")) or "requestBody" in op
    if has_params or method != "get":
        codes |= {404, 422}
    if scopes is not None:
        codes |= {401, 403}
    if method in ("post", "put", "patch", "delete"):
        codes |= {400, 409, 413, 415, 422}
    if writes or optional:
        codes.add(429)
    if route.path.startswith("/v1/releases") or route.path.endswith("/series"):
        codes |= {406, 410}
    if route.path.startswith("/v1/indicators/") and route.path.endswith("/releases"):
        codes.add(410)
    if route.path.startswith("/v1/uploads") or route.path.endswith("/uploads"):
        # The tus protocol's own answers: an expired upload, a missing Tus-Resumable.
        codes |= {410, 412} if method != "get" else {410}
    return codes


def _error_response(code: int, oauth: bool) -> dict[str, Any]:
    if oauth:
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}
    else:
        content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    out: dict[str, Any] = {"description": DESCRIPTIONS.get(code, "Error"), "content": content}
    if code in (429, 503):
        out["headers"] = RETRY_AFTER
    return out


def build(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["OAuthError"] = OAUTH_ERROR_SCHEMA
    components["securitySchemes"] = {
        SCHEME: {
            "type": "oauth2",
            "description": "OAuth 2.0 client credentials; a token must carry every scope listed.",
            "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": dict(SCOPES)}},
        }
    }
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        scopes, writes, optional = _requirement(route.dependant)
        oauth = route.path.startswith("/oauth/")
        for method in route.methods or ():
            op = doc["paths"].get(route.path_format, {}).get(method.lower())
            if op is None:
                continue
            alternatives = _any_of(route.dependant)
            if alternatives:
                # Requirements listed side by side are alternatives: one of them suffices.
                op["security"] = [{SCHEME: [scope]} for scope in sorted(alternatives)]
            elif scopes is not None:
                # OpenAPI's empty requirement: the operation may also be called without a token.
                op["security"] = [{SCHEME: sorted(scopes)}, *([{}] if optional else [])]
            responses = op.setdefault("responses", {})
            if oauth and route.path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
                codes = {400, 401, 413, 415, 429, 503}
            else:
                codes = _statuses(route, method.lower(), op, scopes, writes, optional)
            for code in sorted(codes):
                responses[str(code)] = _error_response(code, oauth)
    return doc


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
