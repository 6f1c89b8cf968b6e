"""Review before publication (the "no surprises" clause of an agreement).

A release whose contributing agreements require it is computed, protected and stored like any
other, then held (``pending_review``) until the providers of the data it counts have reviewed
it: each provider's data managers read the cells exactly as they would be published, with what
changed since the last published release of the same indicator and dimensions, and approve or
object. It is published when every reviewer has approved, or when the window passes under an
agreement that says ``publish``; an objection leaves it unpublished for good (a new request
computes a new release). The decision is :func:`policy.review.decide_publication`, evaluated
with the request's time whenever a held release is touched, and by ``backbone releases
publish-due`` from cron.

Three functions mark the events others may want to hear of, each the one place it happens:
:func:`held` (a release awaits review), :func:`decided` (a reviewer decided) and
:func:`published` (a release was published, with or without review).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aggregation import formats, notices
from aggregation.models import Release, ReleaseReview
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import ConcealedObject, Conflict, InvalidInput, NotFound
from policy.model import Decision
from policy.review import (
    APPROVE,
    OBJECT,
    PublicationDecision,
    Reviewer,
    ReviewStatus,
    decide_publication,
)

PUBLISHED = "published"
PENDING = "pending_review"
OBJECTED = "objected"
STATES = (PUBLISHED, PENDING, OBJECTED)
MAX_REASON = 2000
_HIDDEN = "No such release awaits your organization's review."


class ReleaseNotPublished(Conflict):
    kind = "release-not-published"
    title = "The release is not published"


class ReviewClosed(Conflict):
    kind = "review-closed"
    title = "The review of this release is closed"


def _requester_org(ctx: RequestContext) -> str:
    assert ctx.principal is not None
    return ctx.principal.organization_id


def reviews_of(session: Session, release_id: str) -> Sequence[ReleaseReview]:
    """The reviews a release was held for, by organization."""
    return session.scalars(
        select(ReleaseReview)
        .where(ReleaseReview.release_id == release_id)
        .order_by(ReleaseReview.organization_id)
    ).all()


def summary(
    release: Release, rows: Sequence[ReleaseReview], *, reasons: bool
) -> dict[str, Any] | None:
    """The review part of a release's JSON (``None`` for a release nobody had to review).
    Reasons are free text written by a data manager: only reviewers and the requesting
    organization see them, never recipients."""
    if not rows:
        return None
    return {
        "state": release.state,
        "published_at": release.published_at.isoformat() if release.published_at else None,
        "reviewers": [
            {
                "organization": r.organization_id,
                "due_at": r.due_at.isoformat(),
                "on_timeout": r.on_timeout,
                "decision": r.decision,
                "decided_at": r.decided_at.isoformat() if r.decided_at else None,
                **({"reason": r.reason} if reasons else {}),
            }
            for r in rows
        ],
        "awaiting": [r.organization_id for r in rows if r.decision is None]
        if release.state == PENDING
        else [],
    }


def _statuses(rows: Sequence[ReleaseReview]) -> list[ReviewStatus]:
    return [ReviewStatus(r.organization_id, r.decision, r.due_at, r.on_timeout) for r in rows]


# -- the three events -----------------------------------------------------------------------------


def held(
    session: Session,
    ctx: RequestContext,
    release: Release,
    reviewers: Sequence[Reviewer],
    decision: Decision,
) -> None:
    """Hold a just-stored release for its providers' review ("release awaiting review")."""
    release.state = PENDING
    release.published_at = None
    for r in reviewers:
        session.add(
            ReleaseReview(
                release_id=release.id,
                organization_id=r.organization,
                agreements=list(r.agreements),
                due_at=r.due(release.created_at),
                on_timeout=r.on_timeout,
            )
        )
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_HOLD,
            resource_type="release",
            resource_id=release.id,
            decision=decision,
            counts={"reviewers": len(reviewers)},
            detail="held for review by " + ", ".join(r.organization for r in reviewers),
        ),
    )
    notices.awaiting_review(session, ctx, release, {r.organization for r in reviewers})


def decided(session: Session, ctx: RequestContext, release: Release, review: ReleaseReview) -> None:
    """Audit one reviewer's decision ("review decided"); the reason stays out of the log."""
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_REVIEW_APPROVE
            if review.decision == APPROVE
            else AuditAction.RELEASE_REVIEW_OBJECT,
            resource_type="release",
            resource_id=release.id,
            detail=f"{review.organization_id} {'approved' if review.decision == APPROVE else 'objected'}",
        ),
    )
    notices.review_decided(session, ctx, release, review.organization_id, str(review.decision))


def published(session: Session, ctx: RequestContext, release: Release, how: str) -> None:
    """Audit that a release became readable by its recipients ("release published")."""
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_PUBLISH,
            resource_type="release",
            resource_id=release.id,
            detail=how,
        ),
    )
    notices.release_published(session, ctx, release)


# -- settling held releases -----------------------------------------------------------------------


def settle(session: Session, ctx: RequestContext, release: Release) -> PublicationDecision | None:
    """Publish a held release if its reviews now allow it (approvals, or a window that has
    passed under ``publish``); ``None`` if it is not held."""
    if release.state != PENDING:
        return None
    decision = decide_publication(_statuses(reviews_of(session, release.id)), ctx.now)
    if decision.state == PUBLISHED:
        # Conditional: of two requests settling the same release, one publishes it.
        done = session.execute(
            update(Release)
            .where(Release.id == release.id, Release.state == PENDING)
            .values(state=PUBLISHED, published_at=ctx.now)
            .execution_options(synchronize_session=False)
        )
        session.refresh(release)
        if done.rowcount == 1:  # type: ignore[attr-defined]
            how = (
                "approved by every reviewer"
                if decision.by == "approvals"
                else "the review window passed"
            )
            published(session, ctx, release, how)
    return decision


def settle_release(session: Session, ctx: RequestContext, release_id: str) -> None:
    """:func:`settle` by id (nothing when there is no such release)."""
    release = session.get(Release, release_id)
    if release is not None:
        settle(session, ctx, release)


def settle_indicator(session: Session, ctx: RequestContext, indicator_id: str) -> None:
    """Settle every held release of an indicator (before its releases are listed or read)."""
    for release in session.scalars(
        select(Release).where(Release.indicator_id == indicator_id, Release.state == PENDING)
    ).all():
        settle(session, ctx, release)


@dataclass(frozen=True)
class Settled:
    release: str
    indicator: str
    state: str
    by: str | None
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "indicator": self.indicator,
            "state": self.state,
            "by": self.by,
            "reasons": list(self.reasons),
        }


def publish_due(session: Session, ctx: RequestContext) -> list[Settled]:
    """Settle every held release (the cron job): what is due is published and audited."""
    out: list[Settled] = []
    for release in session.scalars(
        select(Release).where(Release.state == PENDING).order_by(Release.created_at, Release.id)
    ).all():
        decision = settle(session, ctx, release)
        assert decision is not None
        out.append(
            Settled(release.id, release.indicator_id, decision.state, decision.by, decision.reasons)
        )
    return out


def preview_due(session: Session, ctx: RequestContext) -> list[Settled]:
    """What :func:`publish_due` would do at ``ctx.now``, changing nothing: each held release
    and the state its reviews allow (for a confirmation before running it)."""
    out: list[Settled] = []
    for release in session.scalars(
        select(Release).where(Release.state == PENDING).order_by(Release.created_at, Release.id)
    ).all():
        decision = decide_publication(_statuses(reviews_of(session, release.id)), ctx.now)
        out.append(
            Settled(release.id, release.indicator_id, decision.state, decision.by, decision.reasons)
        )
    return out


# -- reviewers ------------------------------------------------------------------------------------


def _reviewable(
    session: Session, ctx: RequestContext, release_id: str, *, lock: bool = False
) -> tuple[Release, ReleaseReview]:
    """The release and the caller organization's review of it. Another organization gets the
    answer a release that does not exist gets (audited as a denial)."""
    # Decisions lock the release row: of two reviewers approving at once, the second sees the
    # first's approval and publishes (SQLite serializes writers anyway).
    release = session.get(Release, release_id, with_for_update=lock or None)
    if release is None:
        raise NotFound(_HIDDEN)
    row = session.get(ReleaseReview, (release_id, _requester_org(ctx)))
    if row is None:
        raise ConcealedObject(_HIDDEN)
    return release, row


def _key(cell: Mapping[str, Any], dims: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(cell.get(d)) for d in dims)


def previous_release(session: Session, release: Release) -> Release | None:
    """The last release of the same indicator and dimensions published before this one."""
    for row in session.scalars(
        select(Release)
        .where(
            Release.indicator_id == release.indicator_id,
            Release.state == PUBLISHED,
            Release.id != release.id,
            Release.created_at <= release.created_at,
        )
        .order_by(Release.created_at.desc(), Release.id.desc())
    ):
        if list(row.dimensions) == list(release.dimensions):
            return row
    return None


def changes(release: Release, previous: Release | None) -> dict[str, Any]:
    """Cell by cell, the previous published value and status against the new ones."""
    dims = list(release.dimensions)
    before = {_key(c, dims): c for c in previous.cells} if previous is not None else {}
    cells: list[dict[str, Any]] = []
    counts = {"changed": 0, "unchanged": 0, "added": 0, "removed": 0}
    seen: set[tuple[str, ...]] = set()
    for cell in release.cells:
        key = _key(cell, dims)
        seen.add(key)
        old = before.get(key)
        new = {"value": cell.get("value"), "status": cell.get("status")}
        if old is None:
            change = "added"
            prior = None
        else:
            prior = {"value": old.get("value"), "status": old.get("status")}
            change = "unchanged" if prior == new else "changed"
        counts[change] += 1
        cells.append(
            {**{d: cell.get(d) for d in dims}, "previous": prior, "new": new, "change": change}
        )
    for key, old in before.items():
        if key not in seen:
            counts["removed"] += 1
            cells.append(
                {
                    **{d: old.get(d) for d in dims},
                    "previous": {"value": old.get("value"), "status": old.get("status")},
                    "new": None,
                    "change": "removed",
                }
            )
    return {
        "against": previous.id if previous is not None else None,
        "counts": counts,
        "cells": cells,
    }


def release_summary(release: Release) -> dict[str, Any]:
    """What identifies a release, whatever its state."""
    return {
        "id": release.id,
        "indicator": release.indicator_id,
        "indicator_version": release.indicator_version,
        "method": release.method,
        "dimensions": list(release.dimensions),
        "parameters": release.parameters,
        "created_at": release.created_at.isoformat(),
        "audit_index": release.audit_index,
        "state": release.state,
        "published_at": release.published_at.isoformat() if release.published_at else None,
    }


def review_document(session: Session, ctx: RequestContext, release_id: str) -> dict[str, Any]:
    """A reviewer's view of a release: its cells exactly as they are (or would be) published,
    what changed against the last published release, and the reviews. Audited."""
    release, _row = _reviewable(session, ctx, release_id)
    settle(session, ctx, release)
    rows = reviews_of(session, release.id)
    cells = list(release.cells)
    pager = {"page": 1, "page_size": len(cells), "total": len(cells), "page_count": 1}
    document = {
        **formats.to_json(release_summary(release), release.dimensions, cells, pager),
        "provenance": release.provenance,
        "review": summary(release, rows, reasons=True),
        "changes": changes(release, previous_release(session, release)),
    }
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_REVIEW_READ,
            resource_type="release",
            resource_id=release.id,
            counts={"cells": len(cells)},
            detail=release.state,
        ),
    )
    return document


def decide(
    session: Session,
    ctx: RequestContext,
    release_id: str,
    decision: str,
    reason: str | None,
) -> dict[str, Any]:
    """Approve or object to a held release for the caller's organization; an objection leaves
    it unpublished for good, the last approval publishes it."""
    if decision not in (APPROVE, OBJECT):  # pragma: no cover - routes pass one of the two
        raise InvalidInput("A review decision is approve or object.")
    reason = reason.strip() if reason else None
    if decision == OBJECT and not reason:
        raise InvalidInput("An objection needs a reason: say what is wrong with the release.")
    release, row = _reviewable(session, ctx, release_id, lock=True)
    settle(session, ctx, release)
    if release.state != PENDING:
        raise ReviewClosed(
            f"The release is {release.state.replace('_', ' ')}: its review is closed."
        )
    if row.decision is not None:
        raise ReviewClosed(f"Your organization has already decided ({row.decision}).")
    assert ctx.principal is not None
    done = session.execute(
        update(ReleaseReview)
        .where(
            ReleaseReview.release_id == release.id,
            ReleaseReview.organization_id == row.organization_id,
            ReleaseReview.decision.is_(None),
        )
        .values(
            decision=decision, reason=reason, decided_by=ctx.principal.client_id, decided_at=ctx.now
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise ReviewClosed("Your organization has already decided.")
    session.refresh(row)
    decided(session, ctx, release, row)
    if decision == OBJECT:
        ended = session.execute(
            update(Release)
            .where(Release.id == release.id, Release.state == PENDING)
            # The same request may be made again after an objection: it is a new release.
            .values(state=OBJECTED, request_key=f"objected:{release.id}")
            .execution_options(synchronize_session=False)
        )
        if ended.rowcount != 1:  # type: ignore[attr-defined]
            raise ReviewClosed("The release was published meanwhile: its review is closed.")
        session.refresh(release)
    else:
        settle(session, ctx, release)
    return {
        **release_summary(release),
        "review": summary(release, reviews_of(session, release.id), reasons=True),
    }


def awaiting(session: Session, ctx: RequestContext, state: str) -> list[dict[str, Any]]:
    """The caller organization's reviews: ``pending`` (awaiting its answer, on a release still
    held), ``decided``, or ``all``; newest first. Audited."""
    org = _requester_org(ctx)
    for release in session.scalars(
        select(Release)
        .join(ReleaseReview, ReleaseReview.release_id == Release.id)
        .where(ReleaseReview.organization_id == org, Release.state == PENDING)
    ).all():
        settle(session, ctx, release)
    query = (
        select(ReleaseReview, Release)
        .join(Release, Release.id == ReleaseReview.release_id)
        .where(ReleaseReview.organization_id == org)
        .order_by(Release.created_at.desc(), Release.id.desc())
    )
    if state == "pending":
        query = query.where(ReleaseReview.decision.is_(None), Release.state == PENDING)
    elif state == "decided":
        query = query.where(ReleaseReview.decision.is_not(None))
    items = [
        {
            **release_summary(release),
            "due_at": review.due_at.isoformat(),
            "on_timeout": review.on_timeout,
            "decision": review.decision,
            "decided_at": review.decided_at.isoformat() if review.decided_at else None,
        }
        for review, release in session.execute(query).all()
    ]
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_REVIEW_LIST,
            resource_type="release_review",
            counts={"releases": len(items)},
            detail=state,
        ),
    )
    return items
