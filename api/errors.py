"""The one place where errors become RFC 9457 problem documents."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.problems import PROBLEMS, problem_type
from core.errors import Conflict, DomainError, Forbidden, NotFound
from identity.errors import AuthenticationFailed, InsufficientScope, missing_token
from policy.model import PUBLIC_PRINCIPAL

log = logging.getLogger("backbone.api")
PROBLEM_JSON = "application/problem+json"


OAUTH_PREFIX = "/oauth/"
# RFC 6749 error codes for what the OAuth endpoints refuse outside Authlib's own handling.
OAUTH_ERRORS = {401: "invalid_client", 429: "slow_down"}


def oauth_error_code(status: int) -> str:
    if status >= 500:
        return "server_error"
    return OAUTH_ERRORS.get(status, "invalid_request")


def problem(
    kind: str,
    *,
    detail: str | None = None,
    request_id: str | None = None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    oauth: bool = False,
) -> JSONResponse:
    spec = PROBLEMS.get(kind, PROBLEMS["domain-error"])
    body: dict[str, Any] = {
        "type": problem_type(kind),
        "title": spec.title,
        "status": status or spec.status,
    }
    if detail:
        body["detail"] = detail
    if request_id:
        body["instance"] = f"urn:backbone:request:{request_id}"
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    if oauth:
        # The OAuth endpoints answer in RFC 6749 form (section 5.2), 429 and 413 included.
        code = status or spec.status
        code = 400 if code == 422 else code  # RFC 6749: invalid_request is a 400
        return JSONResponse(
            {"error": oauth_error_code(code), "error_description": detail or spec.title},
            status_code=code,
            headers={"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
        )
    return JSONResponse(
        body, status_code=status or spec.status, headers=headers, media_type=PROBLEM_JSON
    )


def stored_problem(stored: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """The problem document of an error a background job kept (:func:`jobs.service.problem_of`):
    the same document the request would have been answered with."""
    kind = stored.get("kind", "domain-error")
    spec = PROBLEMS.get(kind, PROBLEMS["domain-error"])
    body: dict[str, Any] = {
        "type": problem_type(kind if kind in PROBLEMS else "domain-error"),
        "title": spec.title,
        "status": spec.status,
        "detail": stored.get("detail") or spec.description,
    }
    if request_id:
        body["instance"] = f"urn:backbone:request:{request_id}"
        body["request_id"] = request_id
    body.update(stored.get("extra") or {})
    return body


def stored_problem_response(stored: dict[str, Any], request_id: str | None) -> JSONResponse:
    body = stored_problem(stored, request_id)
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON)


def _rid(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _oauth(request: Request) -> bool:
    return request.url.path.startswith(OAUTH_PREFIX)


def _www_authenticate(exc: DomainError) -> str:
    if isinstance(exc, AuthenticationFailed):
        if not exc.error:
            return 'Bearer realm="backbone"'
        desc = exc.detail.replace('"', "'")
        return f'Bearer realm="backbone", error="{exc.error}", error_description="{desc}"'
    assert isinstance(exc, InsufficientScope)
    scope = " ".join(sorted(exc.required))
    return f'Bearer realm="backbone", error="insufficient_scope", scope="{scope}"'


def _concealed(request: Request, exc: DomainError) -> DomainError:
    """A read served to the public (without a token) that is refused for what it asks about
    (no such resource, not published to the public, not published at all) is answered as a
    request without a token: the same status, type and body whether the resource exists or not.
    The refusal itself has been audited by then, as it is."""
    if getattr(request.state, "principal", None) is PUBLIC_PRINCIPAL and isinstance(
        exc, NotFound | Forbidden | Conflict
    ):
        return missing_token()
    return exc


def domain_error_response(request: Request, exc: DomainError) -> JSONResponse:
    exc = _concealed(request, exc)
    headers: dict[str, str] = {}
    if isinstance(exc, AuthenticationFailed | InsufficientScope):
        headers["WWW-Authenticate"] = _www_authenticate(exc)
    retry_after = exc.extra.get("retry_after")
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after))
    extra = {k: v for k, v in exc.extra.items() if k != "retry_after"}
    return problem(
        exc.kind,
        detail=exc.detail,
        request_id=_rid(request),
        headers=headers or None,
        extra=extra,
        oauth=_oauth(request),
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors()[:50]:
        # Never echo the input: a body field may hold a record value.
        out.append(
            {
                "location": [str(p) for p in err.get("loc", ())],
                "message": err.get("msg", ""),
                "code": err.get("type", ""),
            }
        )
    return out


# A page for people answers a refusal with a page, not a problem document: it sets
# ``request.state.error_page`` to a function of (request, error, status, headers). The status and
# headers are decided here, as for the API.
ErrorPage = Callable[[Request, DomainError, int, dict[str, str]], Response]


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        page: ErrorPage | None = getattr(request.state, "error_page", None)
        if page is not None:
            spec = PROBLEMS.get(exc.kind, PROBLEMS["domain-error"])
            retry_after = exc.extra.get("retry_after")
            headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
            return page(request, exc, spec.status, headers)
        return domain_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(e["code"] == "json_invalid" for e in errors):
            return problem(
                "malformed-json",
                detail="The request body is not well-formed JSON.",
                request_id=_rid(request),
                oauth=_oauth(request),
            )
        return problem(
            "validation-error",
            detail=f"{len(errors)} problem(s) with the request.",
            request_id=_rid(request),
            extra={"errors": errors},
            oauth=_oauth(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI wraps errors raised while reading the body (our size limit among them).
        if isinstance(exc.__cause__, DomainError):
            return domain_error_response(request, exc.__cause__)
        kinds = {
            400: "malformed-body",
            404: "not-found",
            405: "method-not-allowed",
            413: "payload-too-large",
            415: "unsupported-media-type",
            406: "not-acceptable",
        }
        kind = kinds.get(exc.status_code, "domain-error")
        detail = {
            404: "No resource exists at this path.",
            405: "This method is not allowed here.",
        }.get(exc.status_code, str(exc.detail) if exc.detail else None)
        return problem(
            kind,
            detail=detail,
            request_id=_rid(request),
            status=exc.status_code,
            headers=dict(exc.headers or {}) or None,
            oauth=_oauth(request),
        )
