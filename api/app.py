"""The application factory."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api import console, docs, errors, metrics, openapi, pages, tracing
from api.dbfaults import DatabaseFaults
from api.logging import configure as configure_logging
from api.middleware import RequestMiddleware
from api.readiness import Readiness, ReadinessGate
from api.routers import (
    admin,
    agreements,
    audit,
    budgets,
    codelists,
    datasets,
    health,
    indicators,
    jobs,
    me,
    oauth,
    operations,
    performance,
    policy,
    problems,
    results,
    reviews,
    submissions,
    uploads,
    webhooks,
)
from api.state import AppState
from audit.checkpoints import CheckpointTimer
from audit.integrity import IntegrityWatch
from audit.note import origin_for, signer_for
from core.clock import utcnow
from core.context import RequestContext
from core.db import make_engine, make_session_factory
from core.keys import MasterKey, load_master_key
from core.settings import Settings, get_settings
from identity.service import purge_expired
from identity.signing_keys import ensure_signing_key
from records.retention import purge_and_scrub

VERSION = "0.1.0"
DESCRIPTION = """\
Backbone is the shared measurement system of a Collective Impact initiative. Partner systems push
record-level data under machine-readable sharing agreements; only small-cell-suppressed
community-level indicators ever leave. Authenticate with OAuth 2.0 client credentials at
`/oauth/token`; errors are RFC 9457 problem documents documented under `/problems`.
"""


def _ensure_signing_key(state: AppState) -> None:
    with state.sessions() as session:
        ensure_signing_key(session, state.master, state.clock())
        # Revocations and assertion ids of tokens that have expired anyway are forgotten.
        purge_expired(session, RequestContext("startup", state.clock()))
        session.commit()
    state.keys.invalidate()


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    sessions: sessionmaker[Session] | None = None,
    master: MasterKey | None = None,
    clock: Callable[[], datetime] = utcnow,
    configure_logs: bool = True,
    tracer_provider: Any = None,
) -> FastAPI:
    """The application. ``tracer_provider`` (an OpenTelemetry SDK TracerProvider) turns tracing
    on whatever the environment says; otherwise the OTEL_* variables decide (api.tracing)."""
    settings = settings or get_settings()
    if configure_logs:
        configure_logging(settings.log_level, settings.log_json)
    master = master or load_master_key(settings)
    engine = engine or make_engine(settings.database_url)
    sessions = sessions or make_session_factory(engine)
    backbone = AppState.build(settings, engine, sessions, master, clock)
    provider = tracer_provider or tracing.provider_from_environment()
    traced = (
        tracing.Tracing(provider, owned=tracer_provider is None) if provider is not None else None
    )

    timer: list[CheckpointTimer] = []
    audit_watch = IntegrityWatch()

    def start() -> None:
        _ensure_signing_key(backbone)
        if settings.purge_on_start:
            # Retention is enforced at start too: data past its agreement's grace period is
            # destroyed before the service answers anything.
            purge_and_scrub(
                backbone.sessions,
                engine,
                backbone.clock(),
                settings.data_dir,
                scrub_attempts=4,
                upload_dir=settings.upload_dir,
            )
        backbone.auth.load()
        backbone.policies.refresh()
        backbone.auth.start(settings.auth_sync_seconds)
        backbone.policies.start(settings.auth_sync_seconds)
        backbone.audit_batcher.start()
        backbone.jobs.start()
        if settings.audit_checkpoint_interval_seconds > 0:
            signer = signer_for(backbone.master, origin_for(settings.issuer))
            timer.append(
                CheckpointTimer(
                    sessions,
                    signer,
                    clock,
                    settings.audit_checkpoint_interval_seconds,
                    on_integrity_failure=audit_watch.fail,
                )
            )
            timer[-1].start()

    def stop() -> None:
        while timer:
            timer.pop().stop()
        backbone.jobs.stop()
        backbone.audit_batcher.stop()
        backbone.policies.stop()
        backbone.auth.stop()

    readiness = Readiness(backbone.sessions, start, stop)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A database that is down or not migrated does not stop the service from starting:
        # /readyz says why (503) until it can be used, and start-up then completes by itself.
        if traced is not None:
            traced.start(engine)
        await run_in_threadpool(readiness.try_start)
        yield
        await run_in_threadpool(readiness.stop)
        engine.dispose()
        if traced is not None:
            traced.stop()

    app = FastAPI(
        title="Backbone",
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # served from the installed package, see api.docs
        redoc_url=None,
        # Without tracing no OpenTelemetry provider is configured: FastAPI would otherwise look
        # for one on every request (a tenth of a cached read's time).
        telemetry=(
            traced.telemetry
            if traced is not None
            else {"tracing": False, "metrics": False, "logs": False}
        ),
    )
    app.state.backbone = backbone
    app.state.readiness = readiness
    app.state.audit_watch = audit_watch
    errors.install(app)
    openapi.install(app)
    # Routes are matched in order, one regular expression each, and no two modules' paths
    # overlap: the busiest (probes, token checks, dashboards' reads, tokens, submissions) first. Each
    # module's routes already carry their prefix, tags and dependencies; they are added to the
    # application's own route list rather than through include_router, whose nested matching
    # (FastAPI 0.16x) costs more than the whole work of a cached read.
    for module in (
        health,
        me,
        indicators,
        performance,
        jobs,
        reviews,
        results,
        budgets,
        oauth,
        submissions,
        uploads,
        datasets,
        agreements,
        codelists,
        policy,
        audit,
        admin,
        webhooks,
        problems,
        docs,
    ):
        app.router.routes.extend(module.router.routes)
    if settings.metrics_enabled:
        # Gauges read from the database at scrape time; a job engine's queue gauges would be
        # one more collector here.
        collectors = [metrics.DatabaseCollector(backbone.sessions, clock)]
        app.state.metrics = metrics.MetricsEndpoint(settings.metrics_allow, collectors)
        app.router.routes.extend(operations.router.routes)
    # The pages last: "/" and the page paths match nothing above.
    pages.install(app)
    console.install(app)
    app.add_middleware(DatabaseFaults)
    app.add_middleware(ReadinessGate, readiness=readiness)
    app.add_middleware(
        RequestMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_submission_bytes,
        upload_path=re.compile(submissions.UPLOAD_PATH.pattern),
        routes=app.router.routes,
        observe=metrics.observe_request if settings.metrics_enabled else None,
        trace_id=traced.trace_id if traced is not None else None,
    )
    return app
