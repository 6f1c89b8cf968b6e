"""Review before publication: the data providers' data managers read a held release, see what
changed since the last published one, and approve or object (``aggregation.review``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from aggregation import review
from api.deps import UnitOfWork, audited, require
from api.schemas import ReviewDecisionIn, ReviewDecisionOut, ReviewDocumentOut, ReviewItemOut
from audit.actions import AuditAction
from core.context import RequestContext
from policy.review import APPROVE, OBJECT

router = APIRouter(prefix="/v1", tags=["reviews"])
# The scope with which a data manager approves agreements for the organization.
Reviewer = Annotated[RequestContext, Depends(require("agreements:approve"))]
Decider = Annotated[RequestContext, Depends(require("agreements:approve", write=True))]


@router.get(
    "/releases/{release_id}/review",
    response_model=ReviewDocumentOut,
    response_model_exclude_unset=True,
    summary="A release your organization reviews: cells, changes, reviews",
    dependencies=[Depends(audited(AuditAction.RELEASE_REVIEW_READ, "release", "release_id"))],
)
def get_review(release_id: str, session: UnitOfWork, ctx: Reviewer) -> dict[str, Any]:
    return review.review_document(session, ctx, release_id)


@router.post(
    "/releases/{release_id}/review/approve",
    response_model=ReviewDecisionOut,
    response_model_exclude_unset=True,
    summary="Approve a held release for your organization",
    dependencies=[Depends(audited(AuditAction.RELEASE_REVIEW_APPROVE, "release", "release_id"))],
)
def approve(
    release_id: str, session: UnitOfWork, ctx: Decider, body: ReviewDecisionIn | None = None
) -> dict[str, Any]:
    return review.decide(session, ctx, release_id, APPROVE, body.reason if body else None)


@router.post(
    "/releases/{release_id}/review/object",
    response_model=ReviewDecisionOut,
    response_model_exclude_unset=True,
    summary="Object to a held release, with a reason: it is never published",
    dependencies=[Depends(audited(AuditAction.RELEASE_REVIEW_OBJECT, "release", "release_id"))],
)
def object_to(
    release_id: str, body: ReviewDecisionIn, session: UnitOfWork, ctx: Decider
) -> dict[str, Any]:
    return review.decide(session, ctx, release_id, OBJECT, body.reason)


@router.get(
    "/reviews",
    response_model=list[ReviewItemOut],
    response_model_exclude_unset=True,
    summary="Releases your organization reviews (pending: awaiting its answer)",
    dependencies=[Depends(audited(AuditAction.RELEASE_REVIEW_LIST, "release_review"))],
)
def list_reviews(
    session: UnitOfWork,
    ctx: Reviewer,
    state: Annotated[Literal["pending", "decided", "all"], Query()] = "pending",
) -> list[dict[str, Any]]:
    return review.awaiting(session, ctx, state)
