"""The backbone analysts' publication page: every release and where it stands (published,
awaiting its providers' review with each provider's answer and the end of its window, held past
a window under ``hold``, objected), whether its indicator is public (with a link to the public
page), and, after a confirmation, the run that settles every held release whose review allows
it now (``backbone releases publish-due``, :func:`aggregation.review.publish_due`).

The page reads what ``GET /v1/indicators`` and ``GET /v1/indicators/{id}/releases`` read, through
those routes' functions (which settle a held release that is due, as the API does). The run
publishes only what the providers' reviews already allow (:func:`policy.review.decide_publication`
decides); each publication is audited as the cron job's is, naming the person who ran it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from aggregation import review
from api.console.auth import check_csrf, signed_in
from api.console.pages import confirm_page, confirmed, page
from api.deps import UnitOfWork, audited, state
from api.routers import indicators as indicator_routes
from audit.actions import AuditAction
from core.context import RequestContext
from policy.model import PUBLIC
from policy.review import ReviewStatus, decide_publication

router = APIRouter(include_in_schema=False)
# The scope of an analyst who requests releases (and sees them in every state).
Writer = Annotated[RequestContext, Depends(signed_in("indicators:write"))]
LABELS = {
    review.PUBLISHED: "published",
    review.OBJECTED: "objected: never published",
}


def _standing(item: dict[str, Any], now: datetime) -> tuple[str, list[str]]:
    """A release's publication state in words, and why (for a held one, what each reviewer's
    answer and window allow now)."""
    state_ = item["state"]
    if state_ != review.PENDING:
        reasons = []
        if item.get("review") and state_ == review.PUBLISHED:
            reasons = ["Published after its providers' review."]
        return LABELS.get(state_, state_), reasons
    reviewers = (item.get("review") or {}).get("reviewers", [])
    decision = decide_publication(
        [
            ReviewStatus(
                r["organization"],
                r["decision"],
                datetime.fromisoformat(r["due_at"]),
                r["on_timeout"],
            )
            for r in reviewers
        ],
        now,
    )
    label = "awaiting provider review" if decision.next_due is not None else "held"
    return label, list(decision.reasons)


@router.get("/console/publication", name="console_publication")
def publication(request: Request, session: UnitOfWork, ctx: Writer) -> Response:
    indicators = []
    for item in indicator_routes.list_indicators(session, ctx):  # GET /v1/indicators
        rows = indicator_routes.list_releases(item["id"], session, ctx)
        releases = []
        for r in sorted(rows, key=lambda r: r["created_at"], reverse=True):
            label, reasons = _standing(r, ctx.now)
            releases.append({**r, "label": label, "reasons": reasons})
        indicators.append(
            {
                "id": item["id"],
                "title": item["title"],
                "public": PUBLIC in item.get("recipients", ()),
                "releases": releases,
            }
        )
    held = sum(1 for i in indicators for r in i["releases"] if r["state"] == review.PENDING)
    return page(
        request,
        "console/analyst/publication.html",
        title="Publication",
        section="console_publication",
        indicators=indicators,
        held=held,
    )


@router.get("/console/publication/publish-due", name="console_publish_due_confirm")
def publish_due_confirm(request: Request, session: UnitOfWork, ctx: Writer) -> Response:
    preview = review.preview_due(session, ctx)
    due = [p for p in preview if p.state == review.PUBLISHED]
    facts = [
        (
            f"Release {p.release} of {p.indicator}",
            ("would be published: " if p.state == review.PUBLISHED else "stays held: ")
            + " ".join(p.reasons),
        )
        for p in preview
    ]
    return confirm_page(
        request,
        title="Publish the releases that are due?",
        facts=facts,
        explanation=[
            f"{len(preview)} release(s) are held for their providers' review; {len(due)} of "
            "them may be published now: every provider approved, or the review window of each "
            "provider that did not answer has passed under an agreement that says publish.",
            "Publishing makes a release readable by its recipients (the public, for a public "
            "indicator) at once, and tells the parties. It is what the scheduled job "
            "'backbone releases publish-due' does; it cannot be undone. A release held past its "
            "window under an agreement that says hold stays held, and an objected one is never "
            "published.",
        ],
        action_url=request.url_for("console_publish_due").path,
        button="Publish what is due",
        back_url=request.url_for("console_publication").path,
        back_text="Go back without publishing",
        section="console_publication",
        section_title="Publication",
        confirm=("publish", "I understand that what is due is published now."),
    )


@router.post(
    "/console/publication/publish-due",
    name="console_publish_due",
    dependencies=[Depends(audited(AuditAction.RELEASE_PUBLISH, "release"))],
)
def publish_due(
    request: Request,
    session: UnitOfWork,
    ctx: Writer,
    csrf: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    confirmed(confirm, "publish", "Tick the box to confirm that what is due is published.")
    assert ctx.principal is not None
    st = state(request)
    st.limiter.hit(st.limiter.write_limit, "write", ctx.principal.client_id)
    report = review.publish_due(session, ctx)
    return page(
        request,
        "console/analyst/published_due.html",
        title="Releases that were due",
        section="console_publication",
        section_title="Publication",
        report=[item.as_dict() for item in report],
        published=sum(1 for item in report if item.state == review.PUBLISHED),
    )
