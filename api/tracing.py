"""OpenTelemetry tracing, when an exporter is configured and the ``tracing`` extra is installed.

Configured by the standard variables, read once at start: ``OTEL_TRACES_EXPORTER`` (``otlp``,
``console``, or ``none``; comma-separated), ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (either alone means ``otlp``), the OTLP exporter's own
variables (``OTEL_EXPORTER_OTLP_PROTOCOL``, ``..._HEADERS``, ...), ``OTEL_SERVICE_NAME`` (default
``backbone``), ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SDK_DISABLED``. When none says where to
send spans, or the extra is not installed, nothing changes: no provider, no instrumentation, no
per-request cost.

When active, every request is a server span made by FastAPI's own OpenTelemetry support (its
dependencies and endpoint as child spans), every SQL statement a span of the SQLAlchemy
instrumentation under it, and the request's ``X-Request-ID`` is its trace id (a W3C
``traceparent`` from the caller continues the caller's trace). Spans name routes by their
template (``http.route``); the path and query string, which hold identifiers, are replaced by
``REDACTED`` before any span is exported; SQL statements are exported without their parameters.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from fastapi.telemetry import TelemetryConfig
from sqlalchemy import Engine

log = logging.getLogger("backbone.tracing")

REDACTED = "REDACTED"
# Attributes of a server span that carry the request's path or query (old and new conventions).
_PATH_ATTRIBUTES = ("url.path", "url.query", "url.full", "http.target", "http.url")


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for; none unless it says where spans go."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if raw:
        names = [name.strip().lower() for name in raw.split(",") if name.strip()]
        return [] if "none" in names else names
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        return ["otlp"]
    return []


def _exporter(name: str, environ: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("OTEL_TRACES_EXPORTER names an exporter Backbone does not know; ignored")
        return None
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    except ImportError:
        package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
        log.warning("tracing: the OTLP exporter needs %s; spans are not exported", package)
        return None


def provider_from_environment(environ: Mapping[str, str] | None = None) -> Any:
    """A TracerProvider exporting where the environment says, or None (tracing stays off)."""
    environ = os.environ if environ is None else environ
    names = exporter_names(environ)
    if not names:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "tracing is configured (OTEL_*) but the tracing extra is not installed "
            "(pip install 'backbone[tracing]'); tracing is off"
        )
        return None
    exporters = [e for e in (_exporter(name, environ) for name in names) if e is not None]
    if not exporters:
        return None
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES itself; the service name is set here.
    service = environ.get("OTEL_SERVICE_NAME", "").strip()
    if not service and "service.name=" not in environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        service = "backbone"
    provider = TracerProvider(
        resource=Resource.create({"service.name": service} if service else {})
    )
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex digits), if a trace is active."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class Tracing:
    """Tracing of one application: FastAPI's spans, the engine's statements, request ids."""

    def __init__(self, provider: Any, *, owned: bool) -> None:
        from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

        class Redact(SpanProcessor):
            """Replaces the request's path and query (identifiers) as each span starts."""

            def on_start(self, span: Span, parent_context: Any = None) -> None:
                attributes = span.attributes or {}
                for key in _PATH_ATTRIBUTES:
                    if key in attributes:
                        span.set_attribute(key, REDACTED)

            def on_end(self, span: ReadableSpan) -> None:
                return None

        # Spans are exported when they end, long after every processor's on_start has run.
        provider.add_span_processor(Redact())
        self.provider = provider
        self.owned = owned
        self._engine_tracer: Any = None

    @property
    def telemetry(self) -> TelemetryConfig:
        """FastAPI's ``telemetry`` option: request spans only (metrics are Prometheus')."""
        return {"tracing": True, "tracer_provider": self.provider, "metrics": False, "logs": False}

    @property
    def trace_id(self) -> Callable[[], str | None]:
        return current_trace_id

    def start(self, engine: Engine) -> None:
        """Trace the engine's statements with the SQLAlchemy instrumentation's engine tracer.

        It is attached to this engine only: the instrumentation's global instrumentor would also
        patch every engine the process creates (and the asyncio extension, which needs greenlet),
        and it refuses SQLAlchemy 2.1 by its declared range although the engine events it listens
        to are unchanged (tests/test_metrics.py checks that statements are traced)."""
        try:
            from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
            from opentelemetry.instrumentation.sqlalchemy.version import __version__
        except ImportError:
            log.warning("tracing: opentelemetry-instrumentation-sqlalchemy is not installed")
            return
        from opentelemetry.metrics import NoOpMeterProvider

        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__)
        # Connection pool gauges are not exported (metrics are Prometheus').
        usage = (
            NoOpMeterProvider()
            .get_meter("backbone")
            .create_up_down_counter("db.client.connections.usage")
        )
        EngineTracer(tracer, engine, usage)  # type: ignore[no-untyped-call]
        self._engine_tracer = EngineTracer

    def stop(self) -> None:
        if self._engine_tracer is not None:
            self._engine_tracer.remove_all_event_listeners()
            self._engine_tracer = None
        if self.owned:
            self.provider.shutdown()
