"""The backbone analysts' console: indicators (define with a live policy check, request a release
with its budget preview, follow its job), results and the stories behind their curves.

Thin like the auditor's pages (:mod:`api.console.routes`): every page calls the service the JSON
route of :mod:`api.routers.indicators`, :mod:`api.routers.jobs` or :mod:`api.routers.results`
calls, with the signed-in person's request context holding the scopes that route asks for, under
the same audited action. A release is requested through the same job path as
``POST /v1/indicators/{id}/releases``: :func:`jobs.service.request_release`, then the job is
submitted to the application's job runtime once the request's unit of work has committed.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from aggregation import definitions, releases
from aggregation.definition import IndicatorDefinition
from aggregation.models import Release
from api.console.auth import check_csrf, current, signed_in
from api.console.pages import page
from api.deps import Policy, UnitOfWork, audited, record_refusal, run_unit_of_work, state
from api.problems import PROBLEMS
from api.routers import indicators as indicator_routes
from api.routers.jobs import job_document
from audit.actions import AuditAction
from core.context import RequestContext
from core.db import read_only
from core.errors import DomainError, InvalidInput, PolicyDenied
from jobs import service as job_service
from jobs.models import ACTIVE
from policy.explain import explanation
from policy.model import PUBLIC, Decision
from policy.vocabulary import DisclosureMethod
from results import service as results_service
from results.documents import StoryIn, StoryVersionIn
from results.vocabulary import Audience

router = APIRouter(include_in_schema=False)
# The scopes of the API routes each page stands for.
Reader = Annotated[RequestContext, Depends(signed_in("indicators:read"))]
Writer = Annotated[RequestContext, Depends(signed_in("indicators:write"))]
ResultsReader = Annotated[RequestContext, Depends(signed_in("indicators:read"))]
StoryWriter = Annotated[RequestContext, Depends(signed_in("results:write"))]
MAX_DEFINITION = 20_000
METHODS = (DisclosureMethod.SUPPRESSION.value, DisclosureMethod.DIFFERENTIAL_PRIVACY.value)
REFRESH_SECONDS = 2


def _definition_text(document: dict[str, Any]) -> str:
    """A definition as the YAML the form shows (the definition's own field order)."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=96)


def _parse(text: str) -> IndicatorDefinition:
    """A definition from the form's YAML (or JSON, which is YAML): refused as invalid input,
    naming the fields at fault and never echoing what was typed."""
    if len(text) > MAX_DEFINITION:
        raise InvalidInput(f"A definition is at most {MAX_DEFINITION} characters.")
    try:
        data = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise InvalidInput("The definition is not valid YAML or JSON.") from None
    if not isinstance(data, dict):
        raise InvalidInput("The definition is a mapping of fields (YAML or JSON).")
    try:
        return IndicatorDefinition.model_validate(json.loads(json.dumps(data, default=str)))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'definition'}: {e['msg']}"
            for e in exc.errors()[:10]
        )
        raise InvalidInput(f"The definition is invalid: {problems}.") from None


def _reasons(decision: Decision) -> dict[str, Any]:
    """The decision as the page shows it: effect, deciding rules, failed constraints (expected
    against actual), obligations and the explanation."""
    return {**decision.as_dict(), "explanation": explanation(decision)}


# -- indicators ----------------------------------------------------------------------------------


@router.get("/console/indicators", name="console_indicators")
def indicators(request: Request, session: UnitOfWork, ctx: Reader) -> Response:
    items = indicator_routes.list_indicators(session, ctx)  # GET /v1/indicators
    return page(
        request,
        "console/analyst/indicators.html",
        title="Indicators",
        section="console_indicators",
        items=items,
        may_define="indicators:write" in (ctx.principal.scopes if ctx.principal else ()),
    )


@router.get("/console/indicators/{indicator_id}", name="console_indicator")
def indicator(request: Request, session: UnitOfWork, ctx: Reader, indicator_id: str) -> Response:
    item = indicator_routes.get_indicator(indicator_id, session, ctx)
    found = indicator_routes.list_releases(indicator_id, session, ctx)
    return page(
        request,
        "console/analyst/indicator.html",
        title=item["title"],
        section="console_indicators",
        item=item,
        definition_text=_definition_text({k: v for k, v in item.items() if k != "version"}),
        releases=sorted(found, key=lambda r: r["created_at"], reverse=True),
        public=PUBLIC in item.get("recipients", ()),
        methods=METHODS,
    )


def _define_form(
    request: Request,
    status: int = 200,
    *,
    text: str,
    template_id: str | None,
    templates: list[dict[str, Any]],
    decision: dict[str, Any] | None = None,
    error: DomainError | None = None,
    checked: IndicatorDefinition | None = None,
) -> Response:
    return page(
        request,
        "console/analyst/define.html",
        status,
        title="Define an indicator",
        section="console_define",
        text=text,
        template_id=template_id,
        templates=templates,
        decision=decision,
        error=error,
        checked=checked,
    )


@router.get("/console/define", name="console_define")
def define_page(
    request: Request,
    session: UnitOfWork,
    ctx: Writer,
    template: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The form, pre-filled from an existing indicator as a template (a new id to give)."""
    items = indicator_routes.list_indicators(session, ctx)
    text = ""
    if template:
        chosen = indicator_routes.get_indicator(template, session, ctx)
        document = {k: v for k, v in chosen.items() if k != "version"}
        document["id"] = f"{chosen['id']}-new"
        document["title"] = f"{chosen['title']} (new)"
        text = _definition_text(document)
    return _define_form(request, text=text, template_id=template, templates=items)


def _refused(
    request: Request, session: Session, ctx: RequestContext, exc: DomainError, text: str
) -> Response:
    """A refused check or definition shown on the form with what was typed kept: the refusal
    audited as the API's would be (its unit of work has written nothing)."""
    session.rollback()
    record_refusal(request, exc)
    decision = _reasons(exc.decision) if isinstance(exc, PolicyDenied) and exc.decision else None
    return _define_form(
        request,
        PROBLEMS.get(exc.kind, PROBLEMS["domain-error"]).status,
        text=text,
        template_id=None,
        templates=indicator_routes.list_indicators(session, ctx),
        decision=decision,
        error=exc,
    )


@router.post(
    "/console/define/check",
    name="console_define_check",
    dependencies=[Depends(audited(AuditAction.POLICY_DECIDE, "indicator"))],
)
def define_check(
    request: Request,
    session: UnitOfWork,
    ctx: Writer,
    policy: Policy,
    definition: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """The checks of ``POST /v1/indicators`` and its policy decision, saving nothing."""
    check_csrf(request, csrf)
    try:
        parsed = _parse(definition)
        decision = definitions.check(session, ctx, policy, parsed)
    except DomainError as exc:
        return _refused(request, session, ctx, exc, definition)
    return _define_form(
        request,
        text=definition,
        template_id=None,
        templates=indicator_routes.list_indicators(session, ctx),
        decision=_reasons(decision),
        checked=parsed,
    )


@router.post(
    "/console/define",
    name="console_define_save",
    dependencies=[Depends(audited(AuditAction.INDICATOR_DEFINE, "indicator"))],
)
def define_save(
    request: Request,
    session: UnitOfWork,
    ctx: Writer,
    policy: Policy,
    definition: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """``POST /v1/indicators``: the same service, then the indicator's page."""
    check_csrf(request, csrf)
    try:
        row = definitions.define(session, ctx, policy, _parse(definition))
    except DomainError as exc:
        return _refused(request, session, ctx, exc, definition)
    path = request.app.url_path_for("console_indicator", indicator_id=row.indicator_id)
    return RedirectResponse(f"{path}?defined={row.version}", status_code=303)


# -- releases and jobs ---------------------------------------------------------------------------


def _release_request(dimensions: list[str] | None, method: str | None) -> releases.ReleaseRequest:
    dims = [d for d in (dimensions or []) if d][:8]
    chosen = (method or "").strip() or None
    if chosen is not None and chosen not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}.")
    return releases.ReleaseRequest(dimensions=tuple(dims), method=chosen)


@router.get(
    "/console/indicators/{indicator_id}/release",
    name="console_release_preview",
    dependencies=[Depends(audited(AuditAction.RELEASE_PREVIEW, "indicator", "indicator_id"))],
)
def release_preview(
    request: Request,
    session: UnitOfWork,
    ctx: Writer,
    policy: Policy,
    indicator_id: str,
    dimension: Annotated[list[str] | None, Query(max_length=8)] = None,
    method: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """``POST /v1/indicators/{id}/releases`` with ``dry_run``: what the request would do (the
    method, the budgets it would charge and what would remain, or the stored release)."""
    req = _release_request(dimension, method)
    preview = releases.preview_release(session, ctx, policy, indicator_id, req)
    return page(
        request,
        "console/analyst/preview.html",
        title="Release preview",
        section="console_indicators",
        preview=indicator_routes._preview_out(preview),
        request_method=req.method or "",
    )


@router.post(
    "/console/indicators/{indicator_id}/releases",
    name="console_release_request",
    dependencies=[Depends(audited(AuditAction.RELEASE_CREATE, "indicator", "indicator_id"))],
)
async def release_request(
    request: Request,
    ctx: Writer,
    indicator_id: str,
    dimension: Annotated[list[str] | None, Form()] = None,
    method: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """``POST /v1/indicators/{id}/releases`` as its route does it: the stored release, or a
    job computing it, submitted to the application's job runtime once queued (committed) and
    awaited up to ``BACKBONE_RELEASE_SYNC_SECONDS``; then the job's page, which follows it."""
    check_csrf(request, csrf)
    st = state(request)
    req = _release_request(dimension, method)
    outcome = await run_in_threadpool(
        run_unit_of_work,
        request,
        lambda s: job_service.request_release(s, ctx, st.policies.get(s), indicator_id, req),
    )
    if isinstance(outcome, Release):
        path = request.app.url_path_for("console_indicator", indicator_id=indicator_id)
        return RedirectResponse(f"{path}?stored={outcome.id}#releases", status_code=303)
    job, _new = outcome
    await indicator_routes._finished_within(
        request, job.id, st.jobs.submit(job.id), st.settings.release_sync_seconds
    )
    return RedirectResponse(request.app.url_path_for("console_job", job_id=job.id), status_code=303)


@router.get(
    "/console/jobs/{job_id}",
    name="console_job",
    dependencies=[Depends(audited(AuditAction.JOB_READ, "job", "job_id"))],
)
def job_page(request: Request, session: UnitOfWork, ctx: Writer, job_id: str) -> Response:
    """``GET /v1/jobs/{id}``: state, progress and phase, refreshing itself while active; then
    the release (published, or held with its reviewers) or the problem."""
    read_only(session)  # polled while a release may hold SQLite's write lock
    job = job_service.get_job(session, ctx, job_id)
    document = job_document(session, job)
    active = job.state in ACTIVE
    return page(
        request,
        "console/analyst/job.html",
        title="Release job",
        section="console_indicators",
        job=document,
        active=active,
        refresh=REFRESH_SECONDS if active else None,
    )


# -- results and stories -------------------------------------------------------------------------


@router.get(
    "/console/results",
    name="console_results",
    dependencies=[Depends(audited(AuditAction.RESULT_READ, "result"))],
)
def results(request: Request, session: UnitOfWork, ctx: ResultsReader, policy: Policy) -> Response:
    items = results_service.list_results(session, ctx, policy, state(request).release_views)
    return page(
        request,
        "console/analyst/results.html",
        title="Results and stories",
        section="console_results",
        items=items,
    )


def _result_page(
    request: Request,
    session: Session,
    ctx: RequestContext,
    policy: Any,
    result_id: str,
    status: int = 200,
    error: DomainError | None = None,
) -> Response:
    detail = results_service.get_result(
        session, ctx, policy, state(request).release_views, result_id
    )
    person = current(request)
    return page(
        request,
        "console/analyst/result.html",
        status,
        title=detail.title,
        section="console_results",
        result=detail,
        own=person.organization_id if person else "",
        may_write="results:write" in (ctx.principal.scopes if ctx.principal else ()),
        audiences=[a.value for a in Audience],
        today=ctx.now.date().isoformat(),
        error=error,
    )


@router.get(
    "/console/results/{result_id}",
    name="console_result",
    dependencies=[Depends(audited(AuditAction.RESULT_READ, "result", "result_id"))],
)
def result(
    request: Request, session: UnitOfWork, ctx: ResultsReader, policy: Policy, result_id: str
) -> Response:
    return _result_page(request, session, ctx, policy, result_id)


def _as_of(value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput("as of must be a date (for example 2026-12-01).") from None


def _story_document(model: type[StoryVersionIn], **fields: Any) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'story'}: {e['msg']}"
            for e in exc.errors()[:10]
        )
        raise InvalidInput(f"The story is invalid: {problems}.") from None


@router.post(
    "/console/results/{result_id}/stories",
    name="console_story_add",
    dependencies=[Depends(audited(AuditAction.STORY_WRITE, "result", "result_id"))],
)
def story_add(
    request: Request,
    session: UnitOfWork,
    ctx: StoryWriter,
    result_id: str,
    title: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
    as_of: Annotated[str, Form()] = "",
    audience: Annotated[str, Form()] = Audience.INITIATIVE.value,
    indicator: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """``POST /v1/results/{id}/stories``."""
    check_csrf(request, csrf)
    document = _story_document(
        StoryIn,
        title=title,
        body=body,
        as_of=_as_of(as_of),
        audience=audience,
        indicator=indicator.strip() or None,
    )
    story = results_service.add_story(session, ctx, result_id, document)
    path = request.app.url_path_for("console_result", result_id=result_id)
    return RedirectResponse(f"{path}#{story.id}", status_code=303)


@router.post(
    "/console/stories/{story_id}/versions",
    name="console_story_version",
    dependencies=[Depends(audited(AuditAction.STORY_WRITE, "story", "story_id"))],
)
def story_version(
    request: Request,
    session: UnitOfWork,
    ctx: StoryWriter,
    story_id: str,
    title: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
    as_of: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """``POST /v1/stories/{id}/versions``: a new current version of one's own story."""
    check_csrf(request, csrf)
    document = _story_document(StoryVersionIn, title=title, body=body, as_of=_as_of(as_of))
    story = results_service.add_story_version(session, ctx, story_id, document)
    path = request.app.url_path_for("console_result", result_id=story.result)
    return RedirectResponse(f"{path}#{story.id}", status_code=303)
