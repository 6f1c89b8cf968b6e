"""Background jobs: ``GET /v1/jobs/{id}``, the state and progress of a release computed in the
background, then its release or the problem that failed it (:mod:`jobs.service`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from sqlalchemy.orm import Session

from aggregation import review
from api.deps import UnitOfWork, audited, require
from api.errors import stored_problem
from api.schemas import JobOut
from audit.actions import AuditAction
from core.context import RequestContext
from core.db import read_only
from jobs import service
from jobs.models import ACTIVE, Job

router = APIRouter(prefix="/v1", tags=["jobs"])
Requester = Annotated[RequestContext, Depends(require("indicators:write"))]
POLL_SECONDS = 1


def job_document(session: Session, job: Job) -> dict[str, Any]:
    release = service.release_of(session, job)
    summary: dict[str, Any] | None = None
    if release is not None:
        summary = {
            **review.release_summary(release),
            "review": review.summary(release, review.reviews_of(session, release.id), reasons=True),
        }
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "progress": {"fraction": job.progress, "phase": job.phase},
        "indicator": job.indicator_id,
        "dimensions": job.request.get("dimensions"),
        "method": job.request.get("method"),
        "attempts": job.attempts,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "updated_at": job.updated_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "release": summary,
        "problem": stored_problem(job.problem, job.request_id) if job.problem else None,
    }


def job_headers(job: Job) -> dict[str, str]:
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if job.state in ACTIVE:
        headers["Retry-After"] = str(POLL_SECONDS)
    return headers


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    response_model_exclude_unset=True,
    summary="A release job of your organization: state, progress, then its release or problem",
    description="Poll it (every `Retry-After` seconds while it is queued or running). "
    "A job is readable by the organization that requested it only: to any other, it does not "
    "exist (404, audited).",
    dependencies=[Depends(audited(AuditAction.JOB_READ, "job", "job_id"))],
)
def get_job(job_id: str, response: Response, session: UnitOfWork, ctx: Requester) -> dict[str, Any]:
    read_only(session)  # polled while a release may hold SQLite's write lock
    job = service.get_job(session, ctx, job_id)
    response.headers.update(job_headers(job))
    del response.headers["Location"]
    return job_document(session, job)
