"""Review before publication (the "no surprises" clause), decided without a database or a clock.

Who reviews a release: the providers of the datasets it counts, under every contributing
agreement that requires review (:func:`reviewers`). When it is published: once every reviewer has
approved, or once the window of every reviewer still silent has passed and that reviewer's
agreement says ``publish`` (:func:`decide_publication`). An objection ends the review: the
release is never published.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from policy.model import AgreementTerms

APPROVE = "approve"
OBJECT = "object"
PUBLISH: Literal["publish"] = "publish"
HOLD: Literal["hold"] = "hold"

State = Literal["published", "pending_review", "objected"]


@dataclass(frozen=True, slots=True)
class Reviewer:
    """One organization that must review a release, with the strictest terms of the agreements
    that give it the right: the longest window, and ``hold`` if any of them says so."""

    organization: str
    window_days: int
    on_timeout: Literal["publish", "hold"]
    agreements: tuple[str, ...]

    def due(self, held_at: datetime) -> datetime:
        """When the window given to this reviewer closes."""
        return held_at + timedelta(days=self.window_days)


def reviewers(
    contributing: Iterable[AgreementTerms], datasets: Sequence[str]
) -> tuple[Reviewer, ...]:
    """The organizations that review a release counting ``datasets`` under ``contributing``
    agreement versions, by organization id; empty when no contributing agreement requires it."""
    found: dict[str, Reviewer] = {}
    for terms in contributing:
        review = terms.publication_review
        if review is None:
            continue
        for name in datasets:
            ds = terms.dataset(name)
            if ds is None:
                continue
            seen = found.get(ds.provider)
            if seen is None:
                found[ds.provider] = Reviewer(
                    ds.provider, review.window_days, review.on_timeout, (terms.id,)
                )
                continue
            found[ds.provider] = Reviewer(
                ds.provider,
                max(seen.window_days, review.window_days),
                HOLD if HOLD in (seen.on_timeout, review.on_timeout) else PUBLISH,
                tuple(sorted({*seen.agreements, terms.id})),
            )
    return tuple(found[org] for org in sorted(found))


@dataclass(frozen=True, slots=True)
class ReviewStatus:
    """Where one reviewer stands: its decision (``None`` while it has not answered), when its
    window closes and what its agreement says then."""

    organization: str
    decision: str | None
    due_at: datetime
    on_timeout: str


@dataclass(frozen=True, slots=True)
class PublicationDecision:
    """What a held release's reviews allow at ``now``, and why."""

    state: State
    by: Literal["approvals", "window"] | None
    reasons: tuple[str, ...]
    awaiting: tuple[str, ...]
    next_due: datetime | None

    @property
    def publish(self) -> bool:
        """Whether the release may be published now."""
        return self.state == "published"


def decide_publication(reviews: Sequence[ReviewStatus], now: datetime) -> PublicationDecision:
    """Published when every reviewer approved, or when every silent reviewer's window has passed
    under ``publish``; objected as soon as one reviewer objects; otherwise still held."""
    objected = [r.organization for r in reviews if r.decision == OBJECT]
    if objected:
        return PublicationDecision(
            "objected",
            None,
            tuple(f"{org} objected to the release." for org in objected),
            (),
            None,
        )
    silent = [r for r in reviews if r.decision is None]
    if not silent:
        return PublicationDecision(
            "published", "approvals", ("Every reviewer approved the release.",), (), None
        )
    reasons: list[str] = []
    waiting: list[ReviewStatus] = []
    for r in silent:
        if now < r.due_at:
            reasons.append(f"{r.organization} may review it until {r.due_at.isoformat()}.")
            waiting.append(r)
        elif r.on_timeout == HOLD:
            reasons.append(
                f"{r.organization} has not answered; its review window closed at "
                f"{r.due_at.isoformat()} and its agreement holds the release until it does."
            )
            waiting.append(r)
        else:
            reasons.append(
                f"{r.organization} did not answer by {r.due_at.isoformat()}; its agreement "
                "publishes the release when the window passes."
            )
    if not waiting:
        return PublicationDecision("published", "window", tuple(reasons), (), None)
    upcoming = [r.due_at for r in waiting if now < r.due_at]
    return PublicationDecision(
        "pending_review",
        None,
        tuple(reasons),
        tuple(r.organization for r in waiting),
        min(upcoming) if upcoming else None,
    )
