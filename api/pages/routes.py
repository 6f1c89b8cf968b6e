"""The public pages: the initiative's scorecard, a page per result and per indicator, embeds.

Routes are thin: :mod:`api.pages.content` gathers what a page shows from the same services as the
JSON routes, as the public (:data:`policy.model.PUBLIC_PRINCIPAL`), so a page can never show what
an anonymous API call could not read, and every read leaves the same audit event. Routes are
plain ``def``: the services block (database, chart rendering), so they run in the threadpool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from sqlalchemy.orm import Session

from api.deps import Policy, UnitOfWork, state
from api.pages import content
from api.pages.charts import SDMX_STATUS, ChartCache, format_value, withheld
from api.ratelimit import source_address
from core.context import RequestContext
from core.errors import NotFound
from policy.engine import PolicySet
from policy.model import PUBLIC_PRINCIPAL
from policy.vocabulary import DisclosureMethod

HERE = Path(__file__).parent
router = APIRouter(include_in_schema=False)

# Every page is its own document: no inline script or style (scripts and styles come from /static
# only), nothing from elsewhere; an embed
# may be framed by any site, the other pages by none.
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
)
METHOD_LABELS: dict[str, str] = {
    DisclosureMethod.SUPPRESSION: "Small-cell suppression",
    DisclosureMethod.DIFFERENTIAL_PRIVACY: "Differential privacy",
}


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)


@pass_context
def _path_for(context: Any, name: str, /, **params: Any) -> str:
    # Paths, not absolute URLs: behind a proxy the scheme and host the app sees are not the
    # ones the browser used.
    return str(context["request"].app.url_path_for(name, **params))


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.globals["path_for"] = _path_for
    env.filters["fmt"] = lambda v, unit: format_value(None if v is None else float(v), str(unit))
    env.filters["is_withheld"] = withheld
    env.filters["status_label"] = lambda s: SDMX_STATUS.get(s, "—") if s else "—"
    env.filters["heading"] = content.label
    env.filters["method_label"] = lambda m: METHOD_LABELS.get(str(m), str(m))
    env.filters["plain"] = _plain
    return templates


TEMPLATES = _templates()


class Pages:
    """What the pages keep per application: rendered charts and the initiative's name."""

    def __init__(self) -> None:
        self.charts = ChartCache()


def pages(request: Request) -> Pages:
    found: Pages = request.app.state.pages
    return found


def public_context(request: Request) -> RequestContext:
    """The reader of every page: the public, counted against the per-address limit of
    anonymous reads like an API call without a token."""
    st = state(request)
    st.limiter.hit(st.limiter.public_read_limit, "public-read", source_address(request))
    request.state.principal = PUBLIC_PRINCIPAL
    return RequestContext(request.state.request_id, st.clock(), PUBLIC_PRINCIPAL)


def _render(
    request: Request, template: str, status: int = 200, *, framed: bool = False, **context: Any
) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status)
    response.headers["Content-Security-Policy"] = CSP.format(ancestors="*" if framed else "'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    # Every view is authorized and audited again, like every API read.
    response.headers["Cache-Control"] = "no-cache"
    return response


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page of the site with the site's headers (the console's pages use it too)."""
    return _render(request, template, status, **context)


def not_found(request: Request, session: Session, what: str) -> HTMLResponse:
    return _render(
        request,
        "error.html",
        404,
        initiative=content.initiative_name(session),
        title="Not found",
        detail=f"There is no public {what} at this address.",
    )


@router.get("/", response_class=HTMLResponse, name="scorecard")
def scorecard(request: Request, session: UnitOfWork, policy: Policy) -> Response:
    ctx = public_context(request)
    card = content.scorecard(
        session, ctx, policy, state(request).release_views, pages(request).charts
    )
    return _render(request, "scorecard.html", nav="scorecard", **card)


@router.get("/about", response_class=HTMLResponse, name="about_data")
def about_data(request: Request, session: UnitOfWork) -> Response:
    return _render(request, "about.html", nav="about", initiative=content.initiative_name(session))


@router.get("/results/{result_id}", response_class=HTMLResponse, name="result_page")
def result_page(request: Request, result_id: str, session: UnitOfWork, policy: Policy) -> Response:
    ctx = public_context(request)
    try:
        page = content.result_page(
            session, ctx, policy, state(request).release_views, pages(request).charts, result_id
        )
    except NotFound:
        return not_found(request, session, "result")
    return _render(request, "result.html", nav="scorecard", **page)


def _indicator(
    request: Request, session: Session, policy: PolicySet, indicator_id: str, *, full: bool
) -> dict[str, Any] | None:
    """An indicator's page content for the public, or None where it has none."""
    try:
        return content.indicator_page(
            session,
            public_context(request),
            policy,
            state(request).release_views,
            pages(request).charts,
            indicator_id,
            breakdowns=full,
        )
    except NotFound:
        return None


@router.get("/indicators/{indicator_id}", response_class=HTMLResponse, name="indicator_page")
def indicator_page(
    request: Request, indicator_id: str, session: UnitOfWork, policy: Policy
) -> Response:
    page = _indicator(request, session, policy, indicator_id, full=True)
    if page is None:
        return not_found(request, session, "indicator")
    return _render(
        request,
        "indicator.html",
        nav="scorecard",
        embed_url=str(request.url_for("embed_page", indicator_id=indicator_id)),
        **page,
    )


@router.get("/embed/indicators/{indicator_id}", response_class=HTMLResponse, name="embed_page")
def embed_page(
    request: Request, indicator_id: str, session: UnitOfWork, policy: Policy
) -> Response:
    page = _indicator(request, session, policy, indicator_id, full=False)
    if page is None:
        return not_found(request, session, "indicator")
    return _render(
        request,
        "embed.html",
        framed=True,
        page_url=str(request.url_for("indicator_page", indicator_id=indicator_id)),
        **page,
    )


@router.get("/charts/indicators/{indicator_id}.svg", name="chart_svg")
def chart_svg(request: Request, indicator_id: str, session: UnitOfWork, policy: Policy) -> Response:
    page = _indicator(request, session, policy, indicator_id, full=False)
    chart = page["page"].chart if page is not None else None
    if chart is None:
        return not_found(request, session, "chart")
    return Response(
        chart.svg,
        media_type="image/svg+xml",
        headers={
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "Access-Control-Allow-Origin": "*",
        },
    )
