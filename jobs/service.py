"""Release jobs: requesting one, reading it, and running it (the same code on every engine).

A job acts for the client that requested it, with the scopes its token had, and decides the
request again when it runs: an agreement terminated meanwhile, or the client disabled, fails the
job (default deny). The job resource is readable by the requesting organization only; to anyone
else it does not exist (404), and the refusal is audited.

Idempotency. The same request (same indicator version, dimensions, method and data) of one
organization while its job is queued or running is that job (a unique partial index makes it
so under concurrency). Running a job is idempotent too: a job already succeeded or failed is not
run again, and a job's success is stored in the transaction that stores its release (and, by
differential privacy, charges the budget), so a worker that dies before that commit leaves
nothing charged and nothing stored, and one that dies after it leaves a succeeded job that a
retry does not run again. A release already stored for the request (by a synchronous request or
another organization's job) is found, not computed again, and nothing is charged for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aggregation import releases
from aggregation.models import Release
from aggregation.progress import Progress
from agreements.service import PolicyCache
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import ConcealedObject, DomainError, Forbidden, NotFound, PolicyDenied
from core.ids import new_id
from core.keys import MasterKey
from identity.models import Client, Person
from identity.people import PERSON_PREFIX
from jobs.models import ACTIVE, FAILED, QUEUED, RUNNING, SUCCEEDED, Job
from policy.engine import PolicySet
from policy.model import Principal

log = logging.getLogger("backbone.jobs")

RELEASE = "release"
MAX_ATTEMPTS = 3
DONE = "done"
# The problem of a job that failed for a reason that is no caller's (a bug, a database that
# stayed unreachable through every attempt): its kind, documented under /problems.
JOB_FAILED = "release-job-failed"
_HIDDEN = "No such job."


class JobProcesses(Protocol):
    """Runs a job in a process of its own (:class:`jobs.isolation.JobProcesses`)."""

    def run(self, job_id: str, stale: timedelta | None) -> str | None: ...


@dataclass(frozen=True)
class JobRuntime:
    """What running a job needs: the database, the master key, the agreements, a clock; and,
    where jobs run in processes of their own (:mod:`jobs.isolation`), those processes."""

    sessions: Callable[[], Session]
    master: MasterKey
    policies: PolicyCache
    clock: Callable[[], datetime]
    processes: JobProcesses | None = None
    # Told of every job this process has run to its end (job id, SUCCEEDED or FAILED, the
    # seconds it took here): the metrics count releases where they are computed.
    finished: Callable[[str, str, float], None] | None = None


def execute(runtime: JobRuntime, job_id: str, stale: timedelta | None = None) -> str | None:
    """Run a job (see :func:`run_job`) in a process of its own when the runtime has them,
    else in this thread; then tell ``runtime.finished`` if it has ended."""
    started = time.monotonic()
    if runtime.processes is not None:
        outcome = runtime.processes.run(job_id, stale)
    else:
        outcome = run_job(runtime, job_id, stale)
    if outcome in (SUCCEEDED, FAILED) and runtime.finished is not None:
        try:
            runtime.finished(job_id, outcome, time.monotonic() - started)
        except Exception:  # counting must never fail a job that has succeeded
            log.exception("a finished job could not be counted")
    return outcome


def request_release(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    indicator_id: str,
    request: releases.ReleaseRequest,
) -> Release | tuple[Job, bool]:
    """The stored release for a request, or its job: the active one of the same request of
    this organization, or a new queued one (True). Refused at once, like a release, when the
    request is invalid or denied: nothing is queued then. Audited."""
    principal = ctx.principal
    assert principal is not None
    stored, key = releases.stored_release(session, ctx, policy, indicator_id, request)
    if stored is not None:
        return stored
    job = _active(session, principal.organization_id, indicator_id, key)
    created = False
    if job is None:
        job = Job(
            id=new_id("job"),
            kind=RELEASE,
            state=QUEUED,
            phase=QUEUED,
            progress=0.0,
            organization_id=principal.organization_id,
            organization_kind=principal.organization_kind,
            client_id=principal.client_id,
            scopes=sorted(principal.scopes),
            request_id=ctx.request_id[:64],
            indicator_id=indicator_id,
            request={
                "dimensions": list(request.dimensions) if request.dimensions is not None else None,
                "method": request.method,
            },
            request_key=key,
            attempts=0,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        try:
            with session.begin_nested():
                session.add(job)
                session.flush()
            created = True
        except IntegrityError:
            # The same request of the same organization was queued concurrently: that job.
            job = _active(session, principal.organization_id, indicator_id, key)
            if job is None:  # pragma: no cover - it has finished meanwhile; the client retries
                raise
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_QUEUE,
            resource_type="job",
            resource_id=job.id,
            detail=f"queued a release of {indicator_id}"
            if created
            else f"returned the queued job for a release of {indicator_id}",
        ),
    )
    return job, created


def _active(session: Session, organization_id: str, indicator_id: str, key: str) -> Job | None:
    return session.scalars(
        select(Job).where(
            Job.organization_id == organization_id,
            Job.indicator_id == indicator_id,
            Job.request_key == key,
            Job.state.in_(ACTIVE),
        )
    ).first()


def get_job(session: Session, ctx: RequestContext, job_id: str) -> Job:
    """A job of the caller's organization; another organization's is concealed (404)."""
    job = session.get(Job, job_id) if len(job_id) <= 40 else None
    if job is None:
        raise NotFound(_HIDDEN)
    if ctx.organization_id != job.organization_id:
        raise ConcealedObject(_HIDDEN)
    return job


def release_of(session: Session, job: Job) -> Release | None:
    return session.get(Release, job.release_id) if job.release_id else None


def problem_of(exc: DomainError) -> dict[str, Any]:
    """What a failed job keeps of its error: the kind (its problem type), title, detail and
    extensions, which never hold record values."""
    return {
        "kind": exc.kind,
        "title": exc.title,
        "detail": exc.detail,
        **({"extra": exc.extra} if exc.extra else {}),
    }


def pending(session: Session, now: datetime, stale: timedelta) -> Sequence[str]:
    """Jobs to take over: queued ones, and running ones not heard of for ``stale`` (their
    process stopped)."""
    return session.scalars(
        select(Job.id)
        .where((Job.state == QUEUED) | ((Job.state == RUNNING) & (Job.updated_at < now - stale)))
        .order_by(Job.created_at)
    ).all()


# Running a job.


@dataclass(frozen=True)
class _Claimed:
    principal: Principal
    request_id: str
    indicator_id: str
    request: releases.ReleaseRequest
    policy: PolicySet
    attempts: int
    requester_active: bool


def _requester_active(session: Session, client_id: str) -> bool:
    """Whether who requested a job may still act: an enabled client, or a person signed in to
    the console (``person:<id>``, see :mod:`identity.people`) who is not disabled."""
    if client_id.startswith(PERSON_PREFIX):
        person = session.get(Person, client_id.removeprefix(PERSON_PREFIX))
        return person is not None and person.disabled_at is None
    client = session.get(Client, client_id)
    return client is not None and client.disabled_at is None


def _claim(runtime: JobRuntime, job_id: str, stale: timedelta | None) -> _Claimed | None:
    """Mark a job running (one more attempt), or None if it is finished, unknown, or (with
    ``stale``) running and heard of within ``stale``. The requester is checked, and the
    agreements loaded, in this transaction."""
    now = runtime.clock()
    claimable = (
        Job.state.in_(ACTIVE)
        if stale is None
        else (Job.state == QUEUED) | ((Job.state == RUNNING) & (Job.updated_at < now - stale))
    )
    with runtime.sessions() as session:
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, claimable)
            .values(
                state=RUNNING,
                phase=QUEUED,
                attempts=Job.attempts + 1,
                started_at=now,
                updated_at=now,
            )
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return None
        job = session.get(Job, job_id)
        assert job is not None
        session.refresh(job)
        active = _requester_active(session, job.client_id)
        policy = runtime.policies.get(session)
        session.commit()
        principal = Principal(
            client_id=job.client_id,
            organization_id=job.organization_id,
            organization_kind=job.organization_kind,
            scopes=frozenset(job.scopes),
        )
        claimed_job = _Claimed(
            principal,
            job.request_id,
            job.indicator_id,
            releases.ReleaseRequest(
                dimensions=tuple(job.request["dimensions"])
                if job.request.get("dimensions") is not None
                else None,
                method=job.request.get("method"),
            ),
            policy,
            job.attempts,
            active,
        )
    return claimed_job


def _reporter(runtime: JobRuntime, job_id: str) -> Progress:
    """Write each phase in a transaction of its own (the computation holds none then)."""

    def report(phase: str, fraction: float) -> None:
        try:
            with runtime.sessions() as session:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == RUNNING)
                    .values(phase=phase, progress=fraction, updated_at=runtime.clock())
                )
                session.commit()
        except Exception:  # progress is informative: the computation goes on without it
            log.warning("could not record a job's progress", exc_info=True)

    return report


def _fail(
    runtime: JobRuntime,
    job_id: str,
    problem: dict[str, Any],
    refused: tuple[RequestContext, DomainError] | None = None,
) -> None:
    """Record a job's failure; a refusal is audited with it, as a refused request is."""
    now = runtime.clock()
    with runtime.sessions() as session:
        if refused is not None:
            ctx, exc = refused
            record(
                session,
                ctx,
                AuditRecord(
                    action=AuditAction.RELEASE_CREATE,
                    outcome="denied"
                    if isinstance(exc, Forbidden | ConcealedObject)
                    else "rejected",
                    resource_type="job",
                    resource_id=job_id,
                    decision=exc.decision if isinstance(exc, PolicyDenied) else None,
                    detail=exc.kind,
                ),
            )
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state.in_(ACTIVE))
            .values(state=FAILED, phase=DONE, problem=problem, updated_at=now, finished_at=now)
        )
        session.commit()


def _retry_later(runtime: JobRuntime, job_id: str) -> None:
    with runtime.sessions() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == RUNNING)
            .values(state=QUEUED, phase=QUEUED, progress=0.0, updated_at=runtime.clock())
        )
        session.commit()


def complete(session: Session, job_id: str, release: Release, created: bool, now: datetime) -> None:
    """Record a job's success in the transaction that stores (or found) its release."""
    job = session.get(Job, job_id)
    assert job is not None
    job.state = SUCCEEDED
    job.phase = DONE
    job.progress = 1.0
    job.release_id = release.id
    job.release_created = created
    job.updated_at = now
    job.finished_at = now
    session.flush()


def run_job(runtime: JobRuntime, job_id: str, stale: timedelta | None = None) -> str | None:
    """Run a job once: its final state, ``None`` if there was nothing to do (finished, unknown,
    or running elsewhere), or the exception of a failure that a later attempt may not meet (the
    job is queued again, or failed after :data:`MAX_ATTEMPTS`).

    ``stale=None`` runs a job queued or running (the queue's lock makes the caller the only
    one running it: a running job is a retry after a crash); otherwise a job running is taken
    over only if it has not been heard of for ``stale``."""
    claimed = _claim(runtime, job_id, stale)
    if claimed is None:
        return None
    ctx = RequestContext(claimed.request_id, runtime.clock(), claimed.principal)
    if not claimed.requester_active:
        refusal = Forbidden("The client that requested this job is disabled.")
        _fail(runtime, job_id, problem_of(refusal), (ctx, refusal))
        return FAILED
    try:
        with runtime.sessions() as session:
            release, created = releases.create_release(
                session,
                ctx,
                runtime.master,
                claimed.policy,
                claimed.indicator_id,
                claimed.request,
                _reporter(runtime, job_id),
            )
            complete(session, job_id, release, created, runtime.clock())
            session.commit()
        return SUCCEEDED
    except DomainError as exc:
        # Refused (the agreements, the budget, the definition): the same request would be
        # refused again. Nothing of it was stored or charged.
        _fail(runtime, job_id, problem_of(exc), (ctx, exc))
        return FAILED
    except Exception:
        if claimed.attempts >= MAX_ATTEMPTS:
            log.exception("a release job failed after %s attempts", claimed.attempts)
            _fail(
                runtime,
                job_id,
                {
                    "kind": JOB_FAILED,
                    "title": "The release could not be computed",
                    "detail": f"The job failed {claimed.attempts} times; nothing was stored "
                    "or charged. Request the release again, or ask the operator.",
                },
            )
            return FAILED
        _retry_later(runtime, job_id)
        raise
