"""Start-up that waits for its database: the service starts even when the database is down or not
migrated, answers ``/healthz``, reports the reason on ``/readyz`` (503), refuses other requests
with 503 ``service-not-ready`` and ``Retry-After``, and finishes starting by itself once the
database answers at the migrations' head (checked again at most once a second, on a request).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.problems import send_problem
from migrations.commands import head_revision

log = logging.getLogger("backbone.startup")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER_SECONDS = 5
# Paths that answer whether or not the database can be used (the documentation needs none).
ALWAYS_OPEN = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/problems"})


def migration_state(sessions: sessionmaker[Session]) -> tuple[bool, dict[str, str]]:
    """(at head, checks): whether the database answers and is migrated to the head revision."""
    checks: dict[str, str] = {}
    try:
        with sessions() as session:
            current = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except ProgrammingError:  # PostgreSQL: no alembic_version table
        return False, {"database": "not migrated: run `backbone migrate`"}
    except DBAPIError as exc:
        missing = "no such table" in str(exc.orig)  # SQLite's word for the same
        return False, {
            "database": "not migrated: run `backbone migrate`" if missing else "unreachable"
        }
    except Exception:
        return False, {"database": "unreachable"}
    checks["database"] = "ok"
    head = head_revision()
    if current != head:
        checks["migrations"] = f"at {current}, head is {head}: run `backbone migrate`"
        return False, checks
    checks["migrations"] = "ok"
    return True, checks


class Readiness:
    """Runs the service's start-up work once the database allows it, and its shutdown."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        start: Callable[[], None],
        stop: Callable[[], None],
    ) -> None:
        self.sessions = sessions
        self._start = start
        self._stop = stop
        self._lock = threading.Lock()
        self.started = False
        self.reason: dict[str, str] = {}
        self._last_attempt = 0.0

    def try_start(self) -> bool:
        """Finish starting if the database is ready; False (the reason logged once) if not."""
        if self.started:
            return True
        with self._lock:
            if self.started:
                return True
            self._last_attempt = time.monotonic()
            ready, checks = migration_state(self.sessions)
            if not ready:
                if checks != self.reason:
                    log.error(
                        "not ready: the database is %s; /readyz answers 503 until it is",
                        ", ".join(f"{k} {v}" for k, v in checks.items()),
                    )
                self.reason = checks
                return False
            self._start()
            self.started = True
            self.reason = {}
            log.info("ready")
            return True

    def due(self) -> bool:
        return time.monotonic() - self._last_attempt >= 1.0

    def stop(self) -> None:
        with self._lock:
            if self.started:
                self._stop()
                self.started = False


class ReadinessGate:
    """ASGI middleware: until the service has started, everything but the paths that answer
    anyway gets 503 ``service-not-ready`` with ``Retry-After``."""

    def __init__(self, app: ASGIApp, *, readiness: Readiness) -> None:
        self.app = app
        self.readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self.readiness.started
            or scope.get("path", "") in ALWAYS_OPEN
            or scope.get("path", "").startswith(("/problems/", "/docs"))
        ):
            await self.app(scope, receive, send)
            return
        if self.readiness.due():
            try:
                if await run_in_threadpool(self.readiness.try_start):
                    await self.app(scope, receive, send)
                    return
            except Exception:
                log.exception("start-up failed; retrying on a later request")
        await send_problem(
            send,
            "service-not-ready",
            "The service is not ready: its database is unreachable or not migrated. See /readyz.",
            scope.get("state", {}).get("request_id"),
            RETRY_AFTER_SECONDS,
        )
