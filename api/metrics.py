"""Prometheus metrics: what the service counts as it answers, and what it reads at scrape time.

Counted in process memory (or, with several workers, in prometheus-client's multiprocess files):

* ``backbone_http_requests_total`` and ``backbone_http_request_duration_seconds``, by method and
  route *template* (``/v1/releases/{release_id}``, never the path itself: no identifier is ever
  a label value), and status;
* ``backbone_submissions_total`` and ``backbone_submission_rows_total`` by outcome;
* ``backbone_releases_total`` by method and outcome, ``backbone_release_duration_seconds`` (the
  time a new release took to compute, before the answer is padded to the time quantum).

The routes count a stored submission once the request's unit of work has committed
(api.deps.after_commit), a refusal when it is raised, and a release request answered at once
with its stored release. A release computed by a job is counted where the job ran, when it
ends (:func:`job_recorder`): in the API process on SQLite, in ``backbone worker`` with
PostgreSQL, which serves its own counters with ``--metrics-port``.

Read from the database at every scrape, by :class:`DatabaseCollector` (a few small queries, never
kept in memory, the same for whichever worker answers): the privacy budget spent and remaining
per agreement, dataset and period, the audit log's size, the size and age of its latest
signed checkpoint, and the release jobs queued and running (``backbone_jobs``, by state). Other
scrape-time collectors are added to the list :class:`MetricsEndpoint` is built with in
:func:`api.app.create_app`.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``backbone serve --workers N`` sets it for N > 1),
every worker writes its counters to files in that directory and a scrape, whichever worker
answers it, sums those of every worker that has run since the supervisor started; the
``process_*`` metrics (memory, CPU, file descriptors) are then left out, as they would describe
only the worker that happened to answer. With one process they are included.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aggregation.ledger import budgets
from aggregation.models import PrivacyBudget, Release
from agreements.service import in_force
from audit import checkpoints
from audit.models import AuditHead
from core.errors import DomainError, Forbidden
from core.settings import networks
from jobs.models import ACTIVE, FAILED, Job
from jobs.service import JOB_FAILED
from policy.vocabulary import DisclosureMethod

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# prometheus-client chooses where values live when it is first imported; so does this module.
MULTIPROCESS = bool(os.environ.get(MULTIPROCESS_VARIABLE))

log = logging.getLogger("backbone.metrics")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Requests range from a cached read (a millisecond) to an upload of hundreds of megabytes.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_RELEASE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

# The counters of this process, apart from prometheus-client's default registry (which holds
# collectors of its own and refuses a metric registered twice).
REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "backbone_http_requests",
    "HTTP requests answered, by method, route template and status (0: no answer was sent)",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "backbone_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template",
    ["method", "route"],
    buckets=_HTTP_BUCKETS,
    registry=REGISTRY,
)
SUBMISSION_OUTCOMES = ("accepted", "replayed", "rejected", "refused")
SUBMISSIONS = Counter(
    "backbone_submissions",
    "Submissions by outcome: accepted (stored), replayed (the stored receipt of an "
    "Idempotency-Key), rejected (records that do not satisfy the dataset's schema), refused "
    "(any other refusal of an authenticated submission: policy, body, size, replacement)",
    ["outcome"],
    registry=REGISTRY,
)
SUBMISSION_ROWS = Counter(
    "backbone_submission_rows",
    "Records of accepted submissions, and records read in rejected ones",
    ["outcome"],
    registry=REGISTRY,
)
RELEASE_METHODS = (*(m.value for m in DisclosureMethod), "unspecified")
RELEASE_OUTCOMES = ("computed", "stored", "refused", "failed")
RELEASES = Counter(
    "backbone_releases",
    "Release requests by disclosure method and outcome: computed (a new release), stored (the "
    "stored release of the same request), refused, failed (a job that could not compute it)",
    ["method", "outcome"],
    registry=REGISTRY,
)
RELEASE_DURATION = Histogram(
    "backbone_release_duration_seconds",
    "Time to decide, compute and store a new release, by method (not padded to the time quantum)",
    ["method"],
    buckets=_RELEASE_BUCKETS,
    registry=REGISTRY,
)

# Every series of a bounded label set exists from the start, at zero.
for _outcome in SUBMISSION_OUTCOMES:
    SUBMISSIONS.labels(_outcome)
for _outcome in ("accepted", "rejected"):
    SUBMISSION_ROWS.labels(_outcome)
for _method in RELEASE_METHODS:
    for _outcome in RELEASE_OUTCOMES:
        RELEASES.labels(_method, _outcome)


def submission_stored(rows: int, *, replayed: bool) -> None:
    if replayed:
        SUBMISSIONS.labels("replayed").inc()
        return
    SUBMISSIONS.labels("accepted").inc()
    SUBMISSION_ROWS.labels("accepted").inc(rows)


def submission_refused(exc: DomainError, rows: int = 0) -> None:
    """A refused submission: ``rejected`` when its records failed validation (``rows`` read)."""
    if exc.kind == "submission-rejected":
        SUBMISSIONS.labels("rejected").inc()
        SUBMISSION_ROWS.labels("rejected").inc(rows)
    else:
        SUBMISSIONS.labels("refused").inc()


def _method_label(method: str | None) -> str:
    return method if method in RELEASE_METHODS else "unspecified"


def release_answered(method: str, *, computed: bool, seconds: float) -> None:
    label = _method_label(method)
    RELEASES.labels(label, "computed" if computed else "stored").inc()
    if computed:
        RELEASE_DURATION.labels(label).observe(seconds)


def release_refused(method: str | None) -> None:
    RELEASES.labels(_method_label(method), "refused").inc()


def job_recorder(sessions: Callable[[], Session]) -> Callable[[str, str, float], None]:
    """What a job runtime tells of a finished release job (``JobRuntime.finished``): counted
    where the job ran, the API process on SQLite, ``backbone worker`` with PostgreSQL (served
    by ``backbone worker --metrics-port``). The duration is the job's run in that process, from
    taking it to its release stored."""

    def record(job_id: str, outcome: str, seconds: float) -> None:
        with sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            if outcome == FAILED:
                failed = (job.problem or {}).get("kind") == JOB_FAILED
                RELEASES.labels(
                    _method_label(job.request.get("method")), "failed" if failed else "refused"
                ).inc()
                return
            release = session.get(Release, job.release_id) if job.release_id else None
            label = _method_label(release.method if release else job.request.get("method"))
            computed = bool(job.release_created)
            RELEASES.labels(label, "computed" if computed else "stored").inc()
            if computed:
                RELEASE_DURATION.labels(label).observe(seconds)

    return record


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count and time one HTTP request (called by api.middleware with the route template)."""
    method = method if method in _METHODS else "other"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time.

    ``backbone_metrics_database_ok`` is 1 when they could be read, 0 (and they are absent) when
    the database could not be used; a scrape never fails because of the database.
    """

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        ok = GaugeMetricFamily(
            "backbone_metrics_database_ok",
            "1 when the gauges read from the database at this scrape could be read, else 0",
        )
        try:
            with self.sessions() as session:
                families = self._read(session, self.clock())
        except SQLAlchemyError as exc:
            # The exception's text may quote a statement's parameters: its type only.
            log.warning("metrics: the database could not be read (%s)", type(exc).__name__)
            ok.add_metric([], 0)
            return [ok]
        ok.add_metric([], 1)
        return [*families, ok]

    def _read(self, session: Session, now: datetime) -> list[Metric]:
        labels = ["agreement", "dataset", "period"]
        remaining = GaugeMetricFamily(
            "backbone_privacy_budget_remaining_epsilon",
            "Privacy loss (epsilon) that may still be spent, per agreement, dataset and period, "
            "under the limit of the agreement's version in force",
            labels=labels,
        )
        spent = GaugeMetricFamily(
            "backbone_privacy_budget_spent_epsilon",
            "Privacy loss (epsilon) spent, per agreement, dataset and period",
            labels=labels,
        )
        ids = list(session.scalars(select(PrivacyBudget.agreement_id).distinct()))
        for row in budgets(session, None, in_force(session, ids, now)):
            key = [row["agreement"], row["dataset"], row["period"]]
            remaining.add_metric(key, row["epsilon_remaining"])
            spent.add_metric(key, row["epsilon_spent"])
        size = session.scalar(select(AuditHead.size).where(AuditHead.id == 1)) or 0
        log_size = GaugeMetricFamily(
            "backbone_audit_log_events", "Events in the audit log (its Merkle tree size)"
        )
        log_size.add_metric([], size)
        jobs = GaugeMetricFamily(
            "backbone_jobs",
            "Release jobs queued (waiting for a worker) and running",
            labels=["state"],
        )
        by_state: dict[str, int] = {
            job_state: count
            for job_state, count in session.execute(
                select(Job.state, func.count()).where(Job.state.in_(ACTIVE)).group_by(Job.state)
            )
        }
        for job_state in ACTIVE:
            jobs.add_metric([job_state], by_state.get(job_state, 0))
        out: list[Metric] = [remaining, spent, log_size, jobs]
        latest = checkpoints.latest(session)
        if latest is not None:
            # Absent until the first checkpoint is signed (alert on absent() or on the age).
            checkpoint_size = GaugeMetricFamily(
                "backbone_audit_checkpoint_tree_size",
                "Events covered by the latest signed checkpoint",
            )
            checkpoint_size.add_metric([], latest.tree_size)
            age = GaugeMetricFamily(
                "backbone_audit_checkpoint_age_seconds",
                "Seconds since the latest signed checkpoint was made",
            )
            age.add_metric([], max(0.0, (now - latest.created_at).total_seconds()))
            out += [checkpoint_size, age]
        return out


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class MetricsRefused(Forbidden):
    pass


class MetricsEndpoint:
    """Who may read ``/metrics``, and the exposition it answers with."""

    _FORWARDING = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip"})

    def __init__(self, allow: str, collectors: Sequence[Collector]) -> None:
        self.allow = networks(allow)
        self.collectors = list(collectors)

    def check(self, scope: MutableMapping[str, Any]) -> None:
        """Raise unless the request comes straight from an allowed address (BACKBONE_METRICS_ALLOW).

        A request that names a forwarded client came through a proxy: the address it arrived
        from is the proxy's, not the scraper's, so it is refused whatever that address is
        (Prometheus scrapes each instance directly)."""
        headers = scope.get("headers") or []
        forwarded = any(name.lower() in self._FORWARDING for name, _ in headers)
        client = scope.get("client")
        host = client[0] if isinstance(client, tuple | list) and client else None
        try:
            address = ipaddress.ip_address(str(host))
        except ValueError:
            address = None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if forwarded or address is None or not any(address in net for net in self.allow):
            raise MetricsRefused(
                "Metrics are served only to the addresses in BACKBONE_METRICS_ALLOW, "
                "directly (not through a proxy)."
            )

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (text 0.0.4 by default, or
        OpenMetrics), and its content type."""
        registry = CollectorRegistry(auto_describe=False)
        if MULTIPROCESS:
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry.register(_Forward(REGISTRY))
            registry.register(ProcessCollector(registry=None))
        for collector in self.collectors:
            registry.register(collector)
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type
