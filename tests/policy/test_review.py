"""The pure decision of review before publication: who reviews, and when a held release is
published, objected to, or still held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from policy.model import AgreementTerms, DatasetTerms, FieldTerms, PublicationReview
from policy.review import ReviewStatus, decide_publication, reviewers

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _terms(
    uid: str, provider: str, dataset: str, review: PublicationReview | None
) -> AgreementTerms:
    return AgreementTerms(
        id=uid,
        version=1,
        content_hash="sha256:x",
        status="active",
        effective=T0 - timedelta(days=365),
        expires=None,
        parties=((provider, "assigner"), ("backbone", "assignee")),
        datasets=(
            DatasetTerms(
                name=dataset,
                provider=provider,
                submitters=frozenset({provider}),
                fields=(FieldTerms("id", "string", "identifier"),),
            ),
        ),
        rules=(),
        publication_review=review,
    )


def test_reviewers_are_the_providers_of_the_counted_datasets_under_review():
    district = _terms("a", "district", "readiness", PublicationReview(10, "publish"))
    elnet = _terms("b", "early-learning", "prek", None)
    assert reviewers([district, elnet], ["readiness", "prek"]) == (
        reviewers([district], ["readiness"])
    )
    (only,) = reviewers([district, elnet], ["readiness", "prek"])
    assert (only.organization, only.window_days, only.on_timeout) == ("district", 10, "publish")
    assert reviewers([elnet], ["prek"]) == ()
    # A dataset the release does not count gives its provider no review.
    assert reviewers([district], ["prek"]) == ()


def test_the_strictest_terms_of_one_provider_apply():
    short = _terms("a", "district", "readiness", PublicationReview(5, "publish"))
    long = _terms("b", "district", "attendance", PublicationReview(20, "hold"))
    (r,) = reviewers([short, long], ["readiness", "attendance"])
    assert (r.window_days, r.on_timeout, r.agreements) == (20, "hold", ("a", "b"))
    assert r.due(T0) == T0 + timedelta(days=20)


def _status(org: str, decision: str | None, days: int, on_timeout: str) -> ReviewStatus:
    return ReviewStatus(org, decision, T0 + timedelta(days=days), on_timeout)


def test_published_when_every_reviewer_approved():
    d = decide_publication(
        [_status("a", "approve", 10, "hold"), _status("b", "approve", 10, "hold")], T0
    )
    assert d.publish and d.by == "approvals" and d.awaiting == ()


def test_one_objection_ends_the_review():
    d = decide_publication(
        [_status("a", "approve", 10, "publish"), _status("b", "object", 10, "publish")],
        T0 + timedelta(days=30),
    )
    assert d.state == "objected" and not d.publish and d.reasons == ("b objected to the release.",)


def test_silence_publishes_only_after_the_window_and_only_under_publish():
    reviews = [_status("a", None, 10, "publish"), _status("b", "approve", 10, "publish")]
    early = decide_publication(reviews, T0 + timedelta(days=9))
    assert early.state == "pending_review" and early.awaiting == ("a",)
    assert early.next_due == T0 + timedelta(days=10)
    due = decide_publication(reviews, T0 + timedelta(days=10))
    assert due.publish and due.by == "window"
    held = decide_publication([_status("a", None, 10, "hold")], T0 + timedelta(days=400))
    assert held.state == "pending_review" and held.awaiting == ("a",) and held.next_due is None
    assert "holds the release" in held.reasons[0]


def test_every_silent_reviewer_must_be_past_its_window():
    reviews = [_status("a", None, 5, "publish"), _status("b", None, 15, "publish")]
    assert decide_publication(reviews, T0 + timedelta(days=10)).awaiting == ("b",)
    assert decide_publication(reviews, T0 + timedelta(days=15)).publish
    mixed = [_status("a", None, 5, "publish"), _status("b", None, 5, "hold")]
    assert not decide_publication(mixed, T0 + timedelta(days=50)).publish
