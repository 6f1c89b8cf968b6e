"""The operations view: Prometheus metrics at /metrics (who may read them, what they count, the
gauges read from the database at scrape time, several workers), and OpenTelemetry tracing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from api import metrics, tracing
from api.app import create_app
from audit.models import AuditHead
from cli.serving import METRICS_VARIABLE, metrics_directory
from core.clock import utcnow
from core.settings import Settings
from tests.conftest import BASE_URL, MASTER, Api

SUBMISSIONS = "/v1/datasets/kindergarten_readiness/submissions"
HEADER = "student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _csv(n: int, prefix: str) -> bytes:
    return (
        HEADER + "".join(f"{prefix}{i:08d},2025-26,Ashland,Asian,true,{i}\n" for i in range(n))
    ).encode()


def _parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _app(settings: Settings, engine: Any, sessions: Any, clock: Any, **kw: Any) -> Any:
    return create_app(
        settings.model_copy(update=kw.pop("update", {})),
        engine=engine,
        sessions=sessions,
        master=MASTER,
        clock=clock,
        configure_logs=False,
        **kw,
    )


def _client(app: Any, address: str = "127.0.0.1") -> TestClient:
    return TestClient(
        app, base_url=BASE_URL, raise_server_exceptions=False, client=(address, 50000)
    )


@pytest.fixture
def local(app: Any) -> Iterator[TestClient]:
    """A client connecting from the loopback address (allowed by default)."""
    with _client(app) as c:
        yield c


@pytest.fixture
def local_api(local: TestClient, demo_credentials: dict[str, dict[str, Any]]) -> Api:
    return Api(local, demo_credentials)


def scrape(client: TestClient) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return _parse(r.text)


# -- what is counted ----------------------------------------------------------------------------


def test_a_submission_a_rejected_one_a_replay_and_releases_are_counted(local, local_api):
    before = scrape(local)
    ok = local_api.post(
        SUBMISSIONS,
        as_="district-sis",
        content=_csv(5, "MQ"),
        headers={"Content-Type": "text/csv", "Idempotency-Key": "metrics-1"},
    )
    assert ok.status_code == 201, ok.text
    replay = local_api.post(
        SUBMISSIONS,
        as_="district-sis",
        content=_csv(5, "MQ"),
        headers={"Content-Type": "text/csv", "Idempotency-Key": "metrics-1"},
    )
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    # Lower-case identifiers fail the dataset's pattern: all 3 records are rejected.
    bad = local_api.post(
        SUBMISSIONS, as_="district-sis", content=_csv(3, "mq"), headers={"Content-Type": "text/csv"}
    )
    assert bad.status_code == 422 and bad.json()["type"] == "/problems/submission-rejected"
    # Not a body problem: refused (here, the dataset is not the partner's to submit to).
    refused = local_api.post(
        "/v1/datasets/births/submissions",
        as_="district-sis",
        content=_csv(1, "MQ"),
        headers={"Content-Type": "text/csv"},
    )
    assert refused.status_code in (403, 404), refused.text
    release = local_api.post(
        "/v1/indicators/kindergarten-readiness/releases",
        as_="backbone-manager",
        json={"dimensions": ["school_year"], "method": "suppression"},
    )
    assert release.status_code == 201, release.text
    again = local_api.post(
        "/v1/indicators/kindergarten-readiness/releases",
        as_="backbone-manager",
        json={"dimensions": ["school_year"], "method": "suppression"},
    )
    assert again.status_code == 200
    unknown = local_api.post(
        "/v1/indicators/no-such-indicator/releases", as_="backbone-manager", json={}
    )
    assert unknown.status_code == 404
    after = scrape(local)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("backbone_submissions_total", outcome="accepted") == 1
    assert delta("backbone_submissions_total", outcome="replayed") == 1
    assert delta("backbone_submissions_total", outcome="rejected") == 1
    assert delta("backbone_submissions_total", outcome="refused") == 1
    assert delta("backbone_submission_rows_total", outcome="accepted") == 5
    assert delta("backbone_submission_rows_total", outcome="rejected") == 3
    assert delta("backbone_releases_total", method="suppression", outcome="computed") == 1
    assert delta("backbone_releases_total", method="suppression", outcome="stored") == 1
    assert delta("backbone_releases_total", method="unspecified", outcome="refused") == 1
    assert delta("backbone_releases_total", method="differential_privacy", outcome="computed") == 0
    assert delta("backbone_release_duration_seconds_count", method="suppression") == 1
    assert delta("backbone_release_duration_seconds_sum", method="suppression") > 0

    route = "/v1/datasets/{dataset}/submissions"
    assert delta("backbone_http_requests_total", method="POST", route=route, status="201") == 2
    assert delta("backbone_http_requests_total", method="POST", route=route, status="422") == 1
    releases = "/v1/indicators/{indicator_id}/releases"
    assert delta("backbone_http_requests_total", method="POST", route=releases, status="201") == 1
    assert delta("backbone_http_requests_total", method="POST", route=releases, status="404") == 1
    assert delta("backbone_http_request_duration_seconds_count", method="POST", route=route) == 4
    assert delta("backbone_http_requests_total", method="GET", route="/metrics", status="200") == 1


def test_a_submission_is_counted_only_once_its_unit_of_work_has_committed(
    local, local_api, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    from records import service

    store = service.store

    def store_then_fail_the_commit(session: Any, *args: Any, **kw: Any) -> Any:
        result = store(session, *args, **kw)

        def commit() -> None:
            raise OperationalError("COMMIT", {}, ConnectionError("the connection was lost"))

        monkeypatch.setattr(session, "commit", commit)  # this request's session only
        return result

    monkeypatch.setattr(service, "store", store_then_fail_the_commit)
    token = local_api.token("district-sis")  # before: its own unit of work commits
    before = scrape(local)
    r = local.post(
        SUBMISSIONS,
        content=_csv(4, "MS"),
        headers={"Content-Type": "text/csv", "Authorization": f"Bearer {token}"},
    )
    assert r.status_code >= 500
    after = scrape(local)
    for outcome in metrics.SUBMISSION_OUTCOMES:
        name = "backbone_submissions_total"
        assert _value(after, name, outcome=outcome) == _value(before, name, outcome=outcome)
    name = "backbone_submission_rows_total"
    assert _value(after, name, outcome="accepted") == _value(before, name, outcome="accepted")


def test_routes_are_labelled_by_their_template_never_by_their_path(app, local, local_api):
    before = scrape(local)
    submitted = local_api.post(
        SUBMISSIONS, as_="district-sis", content=_csv(2, "MR"), headers={"Content-Type": "text/csv"}
    )
    assert submitted.status_code == 201
    submission_id = submitted.json()["id"]
    assert local_api.get(f"/v1/submissions/{submission_id}", as_="district-sis").status_code == 200
    r = local_api.get("/v1/releases/rel_nosuchrelease1", as_="backbone-dashboard")
    assert r.status_code == 404
    assert local.get("/no/such/thing-QZX").status_code == 404
    text = local.get("/metrics").text
    samples = _parse(text)
    templates = {getattr(route, "path", None) for route in app.routes} | {"(unmatched)"}
    # The series this test's requests moved (other tests of this process may add routes).
    routes = {
        dict(labels)["route"]
        for (name, labels), value in samples.items()
        if name == "backbone_http_requests_total" and value != before.get((name, labels), 0)
    }
    assert routes <= templates, routes - templates
    assert {"/v1/submissions/{submission_id}", "/v1/releases/{release_id}", "(unmatched)"} <= routes
    for identifier in (submission_id, "rel_nosuchrelease1", "QZX", "kindergarten_readiness/"):
        assert identifier not in text


def test_the_access_log_names_the_route_template_not_the_path(local, caplog):
    with caplog.at_level(logging.INFO, logger="backbone.access"):
        local.get("/v1/releases/rel_inthelogQZX")
    [entry] = [r for r in caplog.records if r.name == "backbone.access"]
    fields = entry.fields  # type: ignore[attr-defined]
    assert fields["route"] == "/v1/releases/{release_id}" and "path" not in fields
    assert "QZX" not in str(fields)


# -- the gauges read from the database ----------------------------------------------------------


def test_budgets_audit_log_size_and_checkpoint_age_are_read_at_scrape_time(
    local, local_api, session, clock
):
    dp = local_api.post(
        "/v1/indicators/kindergarten-readiness/releases",
        as_="backbone-manager",
        json={"dimensions": ["school_year"], "method": "differential_privacy"},
    )
    assert dp.status_code == 201, dp.text
    samples = scrape(local)
    # Read before the budgets are: reading them is an audited event of its own.
    size = session.scalar(select(AuditHead.size).where(AuditHead.id == 1))
    budgets = local_api.get("/v1/budgets", as_="backbone-manager").json()
    assert budgets and any(b["epsilon_spent"] > 0 for b in budgets)
    for b in budgets:
        key = {"agreement": b["agreement"], "dataset": b["dataset"], "period": b["period"]}
        assert (
            samples[("backbone_privacy_budget_remaining_epsilon", frozenset(key.items()))]
            == b["epsilon_remaining"]
        )
        assert (
            samples[("backbone_privacy_budget_spent_epsilon", frozenset(key.items()))]
            == b["epsilon_spent"]
        )
    assert _value(samples, "backbone_metrics_database_ok") == 1
    assert _value(samples, "backbone_audit_log_events") == size > 0

    # A checkpoint made now, then 90 seconds pass: its age is read at each scrape.
    checkpoint = local_api.get("/v1/audit/checkpoints/latest", as_="county-auditor").json()
    clock.advance(seconds=90)
    samples = scrape(local)
    assert _value(samples, "backbone_audit_checkpoint_tree_size") == checkpoint["tree_size"]
    assert _value(samples, "backbone_audit_checkpoint_age_seconds") == pytest.approx(90, abs=1)
    # The checkpoint read is itself an audited event: the log has grown past the checkpoint.
    assert _value(samples, "backbone_audit_log_events") > checkpoint["tree_size"]


def test_a_database_that_cannot_be_read_is_a_gauge_not_a_failed_scrape(tmp_path, caplog):
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")
    collector = metrics.DatabaseCollector(sessionmaker(bind=engine), utcnow)
    endpoint = metrics.MetricsEndpoint("127.0.0.1", [collector])
    with caplog.at_level(logging.WARNING, logger="backbone.metrics"):
        body, _content_type = endpoint.render("")
    samples = _parse(body.decode())
    assert _value(samples, "backbone_metrics_database_ok") == 0
    assert not any(name.startswith("backbone_privacy_budget") for name, _ in samples)
    assert "OperationalError" in caplog.text and "no.db" not in caplog.text
    engine.dispose()


# -- who may read them --------------------------------------------------------------------------


def test_metrics_are_served_only_to_allowed_addresses_directly(app, local):
    assert local.get("/metrics").status_code == 200
    for headers in (
        {"X-Forwarded-For": "127.0.0.1"},
        {"Forwarded": "for=127.0.0.1"},
        {"X-Real-IP": "127.0.0.1"},
    ):
        r = local.get("/metrics", headers=headers)
        assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden"
    for address in ("10.1.2.3", "testclient", "192.168.0.1"):
        with _client(app, address) as other:
            r = other.get("/metrics")
            assert r.status_code == 403, address
            assert "BACKBONE_METRICS_ALLOW" in r.json()["detail"]
            assert "backbone_" not in r.text
    with _client(app, "::ffff:127.0.0.1") as mapped, _client(app, "::1") as six:
        assert mapped.get("/metrics").status_code == 200
        assert six.get("/metrics").status_code == 200


def test_the_allowed_networks_are_a_setting(settings, engine, sessions, clock):
    app = _app(settings, engine, sessions, clock, update={"metrics_allow": "10.0.0.0/8"})
    with _client(app, "10.20.30.40") as inside, _client(app, "127.0.0.1") as loopback:
        assert inside.get("/metrics").status_code == 200
        assert loopback.get("/metrics").status_code == 403
    with pytest.raises(ValidationError):
        Settings(metrics_allow="10.0.0.0/8, not-an-address")
    nobody = _app(settings, engine, sessions, clock, update={"metrics_allow": ""})
    with _client(nobody, "127.0.0.1") as loopback:
        assert loopback.get("/metrics").status_code == 403


def test_metrics_can_be_turned_off(settings, engine, sessions, clock):
    assert Settings().metrics_enabled is True
    app = _app(settings, engine, sessions, clock, update={"metrics_enabled": False})
    labels = {"method": "GET", "route": "/healthz", "status": "200"}

    def healthz_count() -> float:
        return metrics.REGISTRY.get_sample_value("backbone_http_requests_total", labels) or 0.0

    with _client(app) as c:
        before = healthz_count()
        assert c.get("/healthz").status_code == 200
        assert healthz_count() == before  # not counted
        r = c.get("/metrics")
        assert r.status_code == 404 and r.json()["type"] == "/problems/not-found"
        assert "/metrics" not in c.get("/openapi.json").json()["paths"]


def test_metrics_answer_while_the_service_is_not_ready(settings, fresh_databases, clock):
    # A database that is not migrated: nothing else is served, /metrics is, and says so.
    unmigrated = settings.model_copy(update={"database_url": fresh_databases.url()})
    app = create_app(unmigrated, master=MASTER, clock=clock, configure_logs=False)
    with _client(app) as c:
        assert c.get("/v1/whoami").json()["type"] == "/problems/service-not-ready"
        samples = scrape(c)
        assert _value(samples, "backbone_metrics_database_ok") == 0
        assert "backbone_audit_log_events" not in {name for name, _ in samples}


def test_metrics_answer_in_openmetrics_when_asked(local):
    r = local.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


# -- several workers ----------------------------------------------------------------------------


def test_the_workers_metrics_directory_is_made_or_emptied(tmp_path):
    environ: dict[str, str] = {}
    made, created = metrics_directory(environ)
    assert created and made.is_dir() and environ[METRICS_VARIABLE] == str(made)
    made.rmdir()
    given = tmp_path / "prom"
    given.mkdir()
    (given / "counter_12345.db").write_bytes(b"stale")
    (given / "keep.txt").write_text("not ours")
    path, created = metrics_directory({METRICS_VARIABLE: str(given)})
    assert path == given and not created
    assert sorted(p.name for p in given.iterdir()) == ["keep.txt"]


_WORKER = textwrap.dedent(
    """
    import sys
    from api import metrics
    metrics.submission_stored(int(sys.argv[1]), replayed=False)
    metrics.observe_request("GET", "/healthz", 200, 0.01)
    """
)
_SCRAPE = textwrap.dedent(
    """
    import sys
    from api import metrics
    assert metrics.MULTIPROCESS
    sys.stdout.write(metrics.MetricsEndpoint("127.0.0.1", []).render("")[0].decode())
    """
)


def test_in_multiprocess_mode_a_scrape_sums_every_workers_counters(tmp_path):
    env = {**os.environ, METRICS_VARIABLE: str(tmp_path)}
    for rows in ("3", "4"):
        subprocess.run([sys.executable, "-c", _WORKER, rows], env=env, check=True, timeout=120)
    out = subprocess.run(
        [sys.executable, "-c", _SCRAPE], env=env, check=True, timeout=120, capture_output=True
    ).stdout.decode()
    samples = _parse(out)
    assert _value(samples, "backbone_submissions_total", outcome="accepted") == 2
    assert _value(samples, "backbone_submission_rows_total", outcome="accepted") == 7
    assert (
        _value(
            samples, "backbone_http_requests_total", method="GET", route="/healthz", status="200"
        )
        == 2
    )
    # Per-process figures would describe only the worker that answered: left out.
    assert not any(name.startswith("process_") for name, _ in samples)


def test_one_process_includes_its_process_metrics(local):
    assert _value(scrape(local), "process_resident_memory_bytes") > 0


@pytest.mark.process
@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads /proc")
def test_serve_with_two_workers_counts_every_request_whichever_worker_answers(
    fresh_databases, tmp_path, monkeypatch
):
    from tests.test_serve import _serving

    prom = tmp_path / "prom"
    prom.mkdir()
    (prom / "counter_999999.db").write_bytes(b"a previous run")
    monkeypatch.setenv(METRICS_VARIABLE, str(prom))
    with _serving(fresh_databases, tmp_path) as (_proc, port, workers):
        base = f"http://127.0.0.1:{port}"
        for _ in range(20):  # a new connection each: the kernel spreads them over the workers
            assert httpx.get(f"{base}/healthz", timeout=60).status_code == 200
        writers = {p.name for p in prom.iterdir()}
        for _ in range(4):
            samples = _parse(httpx.get(f"{base}/metrics", timeout=60).text)
            assert (
                _value(
                    samples,
                    "backbone_http_requests_total",
                    method="GET",
                    route="/healthz",
                    status="200",
                )
                == 20
            )
    assert "counter_999999.db" not in writers
    assert {f"counter_{pid}.db" for pid in workers} & writers


@pytest.mark.process
@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads /proc")
def test_serve_makes_a_temporary_metrics_directory_and_removes_it(
    fresh_databases, tmp_path, monkeypatch
):
    from tests.test_serve import _serving

    monkeypatch.delenv(METRICS_VARIABLE, raising=False)
    with _serving(fresh_databases, tmp_path) as (_proc, port, workers):
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60).status_code == 200
        directories = set()
        for pid in workers:
            environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
            found = [v for v in environ if v.startswith(METRICS_VARIABLE.encode() + b"=")]
            directories |= {Path(v.split(b"=", 1)[1].decode()) for v in found}
        [directory] = directories  # one, shared by the workers
        assert directory.is_dir()
    assert not directory.exists()


# -- tracing ------------------------------------------------------------------------------------


def test_tracing_is_off_unless_an_exporter_is_configured():
    assert tracing.exporter_names({}) == []
    assert tracing.provider_from_environment({}) is None
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporter_names({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == ["otlp"]
    assert tracing.exporter_names({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318"}) == [
        "otlp"
    ]
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "otlp, console"}) == ["otlp", "console"]
    assert (
        tracing.exporter_names({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"})
        == []
    )


def test_a_configured_exporter_makes_a_provider(monkeypatch):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    made: list[object] = []
    original = tracing._exporter

    def spy(name: str, environ: Any) -> Any:
        made.append(original(name, environ))
        return made[-1]

    monkeypatch.setattr(tracing, "_exporter", spy)
    provider = tracing.provider_from_environment(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SERVICE_NAME": "bb-test"}
    )
    assert provider is not None and isinstance(made[-1], OTLPSpanExporter)
    assert provider.resource.attributes["service.name"] == "bb-test"
    provider.shutdown()
    provider = tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(made[-1], ConsoleSpanExporter)
    assert provider.resource.attributes["service.name"] == "backbone"
    provider.shutdown()
    assert tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "zipkin-ish"}) is None


def test_the_otlp_protocol_and_the_resource_attributes_are_read(monkeypatch, caplog):
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError:
        OTLPSpanExporter = None  # noqa: N806 - the optional gRPC exporter is not installed
    grpc = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    with caplog.at_level(logging.WARNING, logger="backbone.tracing"):
        exporter = tracing._exporter("otlp", grpc)
    if OTLPSpanExporter is None:
        assert exporter is None and "opentelemetry-exporter-otlp-proto-grpc" in caplog.text
        assert tracing.provider_from_environment(grpc) is None
    else:
        assert isinstance(exporter, OTLPSpanExporter)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,team=ops")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    provider = tracing.provider_from_environment()
    assert provider.resource.attributes["service.name"] == "from-attributes"
    assert provider.resource.attributes["team"] == "ops"
    provider.shutdown()


def test_without_the_tracing_extra_a_configuration_changes_nothing(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger="backbone.tracing"):
        assert tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "console"}) is None
    assert "backbone[tracing]" in caplog.text


@pytest.fixture
def spans() -> Iterator[tuple[Any, Any]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_a_traced_request_has_its_trace_id_as_request_id_and_sql_spans(
    settings, engine, sessions, clock, demo_credentials, spans
):
    provider, exporter = spans
    app = _app(settings, engine, sessions, clock, tracer_provider=provider)
    with _client(app) as c:
        api = Api(c, demo_credentials)
        token = api.token("backbone-dashboard")
        exporter.clear()
        r = c.get(
            "/v1/releases/rel_tracedQZX?filter=neighborhood:QZXhood",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "mine-123"},
        )
        assert r.status_code == 404
        finished = exporter.get_finished_spans()
        [server] = [s for s in finished if s.attributes.get("http.route")]
        assert server.name == "GET /v1/releases/{release_id}"
        trace_id = format(server.context.trace_id, "032x")
        assert r.headers["x-request-id"] == trace_id == r.json()["request_id"]
        sql = [s for s in finished if "db.statement" in s.attributes]
        assert sql and all(s.context.trace_id == server.context.trace_id for s in sql)
        assert server.attributes["url.path"] == tracing.REDACTED
        assert server.attributes["url.query"] == tracing.REDACTED
        for span in finished:
            assert "QZX" not in str(dict(span.attributes)) + span.name

        # A caller's traceparent continues its trace.
        caller = "4bf92f3577b34da6a3ce929d0e0e4736"
        r = c.get("/healthz", headers={"traceparent": f"00-{caller}-00f067aa0ba902b7-01"})
        assert r.headers["x-request-id"] == caller
    # Stopped with the application: statements are no longer traced.
    exporter.clear()
    with sessions() as s:
        s.execute(select(AuditHead.size))
    assert not exporter.get_finished_spans()


@pytest.mark.process
def test_serve_traces_to_the_console_exporter_when_the_environment_says_so(
    fresh_databases, tmp_path
):
    """The README's `OTEL_TRACES_EXPORTER=console backbone serve`, in a fresh process."""
    import signal
    import time

    from migrations.commands import upgrade
    from tests.test_serve import BACKBONE, _env, _free_port

    url = fresh_databases.url()
    upgrade(url)
    port = _free_port()
    env = {**_env(url, tmp_path, port), "OTEL_TRACES_EXPORTER": "console"}
    env.pop(METRICS_VARIABLE, None)
    out = tmp_path / "stdout.txt"
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            [str(BACKBONE), "serve", "--port", str(port)],
            env=env,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, "serve exited"
                try:
                    if httpx.get(f"{base}/readyz", timeout=30).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.2)
            r = httpx.get(f"{base}/v1/releases/rel_consoleQZX", timeout=30)
            assert r.status_code == 401
            trace_id = r.headers["x-request-id"]
            assert len(trace_id) == 32 and int(trace_id, 16)
        finally:
            proc.send_signal(signal.SIGTERM)  # the provider flushes its spans as it stops
            proc.wait(timeout=60)
    printed = out.read_text()
    assert f'"trace_id": "0x{trace_id}"' in printed
    assert '"http.route": "/v1/releases/{release_id}"' in printed
    assert '"url.path": "REDACTED"' in printed
    assert '"db.statement"' in printed  # /readyz's queries, traced
    assert "QZX" not in printed


def test_without_tracing_request_ids_are_the_services_own(local):
    r = local.get(
        "/healthz",
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    )
    assert r.headers["x-request-id"] != "4bf92f3577b34da6a3ce929d0e0e4736"
    assert local.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == (
        "abc-123"
    )
