"""Pure ASGI middleware: request ids, JSON access logs, request metrics, body size limits, the
last-resort 500.

It wraps the whole application, so every response (a 500 included) carries ``X-Request-ID`` and
is a problem document when it is an error. Logs and metrics name a request's route by its
template (``/v1/releases/{release_id}``), never by its path: paths hold identifiers. When tracing
is active (see api.tracing) the request id is the request's trace id.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import anyio
from starlette.routing import BaseRoute, Match

from api.logging import request_id_var
from api.problems import PROBLEMS, problem_body
from core import jsonscan
from core.errors import PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_RID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Request ids need to be unique, not secret: a random per-process prefix and a counter (32 hex
# digits, like a UUID's) cost nothing per request.
_rid_prefix = os.urandom(8).hex()
_rid_counter = itertools.count()


def _reseed_request_ids() -> None:
    global _rid_prefix, _rid_counter
    _rid_prefix, _rid_counter = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_reseed_request_ids)  # forked workers must not share ids


def _new_request_id() -> str:
    return f"{_rid_prefix}{next(_rid_counter):016x}"


UNMATCHED = "(unmatched)"


def route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route that answered (or would have answered) the request."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # Answered before routing (not ready, too large, a NUL in the path), or no route matched.
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return str(getattr(route, "path", UNMATCHED))
    return UNMATCHED


access_log = logging.getLogger("backbone.access")
error_log = logging.getLogger("backbone.error")


# On every response. Pages and the documentation load their scripts and styles from the service
# itself only; nothing may frame them.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
HTML_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    b"frame-ancestors 'none'"
)
API_CSP = b"default-src 'none'; frame-ancestors 'none'"
_DROPPED = frozenset({b"server", b"x-powered-by"})


def secure_headers(
    headers: list[tuple[bytes, bytes]], authenticated: bool
) -> list[tuple[bytes, bytes]]:
    """The response's headers with the security headers added and any banner removed.

    HTML gets a strict Content-Security-Policy; everything else one that allows nothing. A JSON
    answer to an authenticated request is ``Cache-Control: no-store`` unless the route chose a
    policy itself (releases are ``private, no-cache``, with an ETag).
    """
    out = [(k, v) for k, v in headers if k.lower() not in _DROPPED]
    names = {k.lower() for k, _ in out}
    ctype = next((v for k, v in out if k.lower() == b"content-type"), b"").lower()
    out.extend(h for h in SECURITY_HEADERS if h[0] not in names)
    if b"content-security-policy" not in names:
        csp = HTML_CSP if ctype.startswith(b"text/html") else API_CSP
        out.append((b"content-security-policy", csp))
    if authenticated and b"cache-control" not in names and b"json" in ctype:
        out.append((b"cache-control", b"no-store"))
    return out


def _has_nul(scope: Scope) -> bool:
    query = scope.get("query_string", b"")
    return "\x00" in scope.get("path", "") or b"\x00" in query or b"%00" in query


# A NUL character escaped in JSON text (a literal backslash-u0000 in a string is refused too).
_JSON_NUL = b"\\u0000"


class RequestTooLarge(PayloadTooLarge):
    pass


def _problem_bytes(kind: str, detail: str, request_id: str, oauth: bool) -> tuple[int, bytes]:
    spec = PROBLEMS[kind]
    if oauth:  # RFC 6749 form at the OAuth endpoints
        code = "server_error" if spec.status >= 500 else "invalid_request"
        return spec.status, json.dumps({"error": code, "error_description": detail}).encode()
    return spec.status, json.dumps(problem_body(kind, detail, request_id)).encode()


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_upload_bytes: int,
        upload_path: re.Pattern[str],
        routes: Sequence[BaseRoute] = (),
        observe: Callable[[str, str, int, float], None] | None = None,
        trace_id: Callable[[], str | None] | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.max_upload = max_upload_bytes
        self.upload_path = upload_path
        self.routes = routes
        self.observe = observe  # (method, route template, status, seconds)
        self.trace_id = trace_id  # the current trace's id when tracing is active

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        traced = self.trace_id() if self.trace_id is not None else None
        incoming = headers.get("x-request-id", "")
        rid = traced or (incoming if _RID.match(incoming) else _new_request_id())
        authenticated = "authorization" in headers
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status_holder = {"status": 0, "started": False}
        upload = bool(self.upload_path.match(scope.get("path", "")))
        limit = self.max_upload if upload else self.max_body
        json_body = (
            not upload
            and "json" in headers.get("content-type", "").lower()
            and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE")
        )

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [
                    *secure_headers(list(message["headers"]), authenticated),
                    (b"x-request-id", rid.encode()),
                ]
            await send(message)

        async def reject(kind: str, detail: str) -> None:
            oauth = scope.get("path", "").startswith("/oauth/")
            status, body = _problem_bytes(kind, detail, rid, oauth)
            ctype = b"application/json" if oauth else b"application/problem+json"
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", ctype),
                        (b"content-length", str(len(body)).encode()),
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
            await send_wrapper({"type": "http.response.body", "body": body})

        try:
            if _has_nul(scope):
                # PostgreSQL refuses NUL in text: a 4xx here, never a 500 at the database.
                await reject("invalid-input", "The path or query string contains a NUL character.")
                return
            declared = headers.get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                await reject(
                    "payload-too-large", f"The request body exceeds the limit of {limit} bytes."
                )
                return
            if json_body:
                # Buffered (it is at most the body limit) and scanned before any parser sees it.
                body = bytearray()
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    body += message.get("body", b"")
                    if len(body) > limit:
                        await reject(
                            "payload-too-large",
                            f"The request body exceeds the limit of {limit} bytes.",
                        )
                        return
                    if not message.get("more_body"):
                        break
                data = bytes(body)
                if b"\x00" in data or _JSON_NUL in data:
                    await reject("invalid-input", "The JSON body contains a NUL character.")
                    return
                wrong = (
                    await anyio.to_thread.run_sync(jsonscan.within, data)
                    if len(data) > 65536
                    else jsonscan.within(data)
                )
                if wrong is not None:
                    await reject("json-too-complex", wrong)
                    return
                replayed = False

                async def replay() -> Message:
                    nonlocal replayed
                    if not replayed:
                        replayed = True
                        return {"type": "http.request", "body": data, "more_body": False}
                    return await receive()

                await self.app(scope, replay, send_wrapper)
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise RequestTooLarge(
                            f"The request body exceeds the limit of {limit} bytes."
                        )
                return message

            await self.app(scope, limited_receive, send_wrapper)
        except Exception:
            error_log.exception(
                "unhandled error", extra={"fields": {"route": route_template(scope, self.routes)}}
            )
            if not status_holder["started"]:
                await reject("internal-error", "An unexpected error occurred.")
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope, self.routes)
            method = str(scope.get("method", ""))
            status = int(status_holder["status"])
            access_log.info(
                "request",
                extra={
                    "fields": {
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    }
                },
            )
            if self.observe is not None:
                self.observe(method, route, status, seconds)
            request_id_var.reset(token)
