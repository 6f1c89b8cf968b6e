"""A lost database connection is the database being unavailable, not a bug.

A PostgreSQL restart, a failover or a killed backend breaks the connection under the request in
flight. Such a request is answered 503 ``database-unavailable`` with ``Retry-After`` (nothing it
did was committed) instead of 500, and a read (GET, HEAD) is first retried once on a fresh
connection: the pool has discarded the broken one (and, with ``pool_pre_ping``, checks the
others before handing them out). Writes are retried where the route knows they are idempotent
(a submission with an Idempotency-Key; see ``retry_once``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc

from api.problems import send_problem

log = logging.getLogger("backbone.database")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")

RETRY_AFTER_SECONDS = 2
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD"})


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the database could not be used: the connection
    was lost or refused, or the pool had none to give. Errors the database gives to a working
    connection (a constraint, a syntax error) are not this."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and (
            current.connection_invalidated
            or isinstance(current, sa_exc.OperationalError | sa_exc.InterfaceError)
        ):
            return True
        if isinstance(current, sa_exc.TimeoutError):  # no pooled connection in time
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_once(work: Callable[[], T], before_retry: Callable[[], None]) -> T:
    """Run ``work``; if the database connection was lost, call ``before_retry`` (roll back) and
    run it once more. Only for work that is safe to repeat."""
    try:
        return work()
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.warning("the database connection was lost; retrying once on a fresh connection")
        before_retry()
    return work()


async def _empty_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class DatabaseFaults:
    """ASGI middleware: retry a read once, then answer 503 for a lost database connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        attempts = 2 if scope.get("method") in IDEMPOTENT_METHODS else 1
        for attempt in range(attempts):
            try:
                # A read has no body: a retry gets the same empty one.
                await self.app(scope, receive if attempt == 0 else _empty_body, tracked)
                return
            except Exception as exc:
                if started or not database_unavailable(exc):
                    raise
                if attempt + 1 < attempts:
                    log.warning("the database connection was lost; retrying the read once")
                    continue
                log.warning("the database is unavailable (%s); answered 503", type(exc).__name__)
        await _answer_503(scope, send)


async def _answer_503(scope: Scope, send: Send) -> None:
    await send_problem(
        send,
        "database-unavailable",
        "The database connection was lost; nothing was committed. Retry later.",
        scope.get("state", {}).get("request_id"),
        RETRY_AFTER_SECONDS,
    )
