"""OAuth 2.0 endpoints: the Starlette side of the framework-free server in ``identity``.

Authlib's server is synchronous, so each route reads the form in the event loop and runs the
server in the threadpool. OAuth endpoints answer with RFC 6749 error objects, which OAuth
client libraries expect, rather than problem documents.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import UnitOfWork, anonymous_context, state
from api.ratelimit import claimed_client_id, source_address
from api.schemas import IntrospectionOut, JwksOut, RevocationOut, ServerMetadataOut, TokenOut
from core.errors import InvalidInput
from identity import service
from identity.oauth_server import HttpRequest, metadata
from identity.signing_keys import published_jwks

router = APIRouter(tags=["oauth"])


async def _http_request(request: Request) -> HttpRequest:
    form: dict[str, list[str]] = {}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        parsed = await request.form()
        for key, value in parsed.multi_items():
            if isinstance(value, str):
                if "\x00" in value or "\x00" in key:
                    raise InvalidInput("The form contains a NUL character.")
                form.setdefault(key, []).append(value)
    return HttpRequest(
        method=request.method, url=str(request.url), headers=dict(request.headers), form=form
    )


def oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An RFC 6749 error object (section 5.2), which OAuth client libraries expect."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
    )


def _too_many(retry_after: int, what: str) -> JSONResponse:
    return oauth_error(
        429,
        "slow_down",
        f"Too many {what}; retry after {retry_after} second(s).",
        {"Retry-After": str(retry_after)},
    )


async def _endpoint(request: Request, session: UnitOfWork, endpoint: str) -> JSONResponse:
    st = state(request)
    limiter = st.limiter
    http = await _http_request(request)
    claimed_ids = http.form.get("client_id") or []
    claimed = claimed_client_id(request, claimed_ids[0] if claimed_ids else None)
    address = source_address(request)
    # An address that keeps failing is refused before any secret is checked. Nothing else is
    # counted before authentication: the client's own allowance is spent only by requests that
    # authenticate as that client (see api.ratelimit).
    retry = limiter.exhausted(limiter.failure_limit, "oauth-fail-addr", address)
    if retry is not None:
        return _too_many(retry, "failed authentications from this address")
    ctx = anonymous_context(request)

    def admit(client_id: str) -> int | None:
        return limiter.take(limiter.token_limit, endpoint, client_id)

    def run() -> Any:
        return service.oauth_endpoint(
            session, ctx, st.master, st.oauth, st.keys(None), endpoint, http, admit
        )

    response = await run_in_threadpool(run)
    if response.client_id is None and response.status in (400, 401):
        # A failed authentication (or a request that identifies no client).
        limiter.take(limiter.failure_limit, "oauth-fail-addr", address)
        if claimed is not None:
            retry = limiter.take(limiter.failure_limit, "oauth-fail-client", claimed)
            if retry is not None:
                return _too_many(retry, "failed authentications for this client id")
    headers = {k: v for k, v in response.headers if k.lower() != "content-type"}
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("Pragma", "no-cache")
    return JSONResponse(response.body, status_code=response.status, headers=headers)


@router.post(
    "/oauth/token",
    response_model=TokenOut,
    response_model_exclude_unset=True,
    summary="Issue an access token (client credentials)",
)
async def token(request: Request, session: UnitOfWork) -> JSONResponse:
    return await _endpoint(request, session, "token")


@router.post(
    "/oauth/revoke",
    response_model=RevocationOut,
    response_model_exclude_unset=True,
    summary="Revoke an access token (RFC 7009)",
)
async def revoke(request: Request, session: UnitOfWork) -> JSONResponse:
    return await _endpoint(request, session, "revocation")


@router.post(
    "/oauth/introspect",
    response_model=IntrospectionOut,
    response_model_exclude_unset=True,
    summary="Introspect an access token (RFC 7662)",
)
async def introspect(request: Request, session: UnitOfWork) -> JSONResponse:
    return await _endpoint(request, session, "introspection")


@router.get(
    "/.well-known/oauth-authorization-server",
    response_model=ServerMetadataOut,
    response_model_exclude_unset=True,
    summary="Server metadata (RFC 8414)",
)
def server_metadata(request: Request) -> dict[str, Any]:
    return metadata(state(request).oauth)


@router.get(
    "/oauth/jwks.json",
    response_model=JwksOut,
    response_model_exclude_unset=True,
    summary="Public keys that verify access tokens",
)
def jwks(request: Request, session: UnitOfWork) -> JSONResponse:
    st = state(request)
    body = published_jwks(session, st.clock())
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})
