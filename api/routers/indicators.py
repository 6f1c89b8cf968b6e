"""Indicators and releases: definitions, release requests, and the dashboard read API.

Releases are served as JSON (headers and rows), CSV or SDMX-CSV 2.0, chosen by ``Accept``;
filtered by dimension values (``filter=neighborhood:Ashland,Central``, repeatable); paginated
(``page``, ``page_size``); with a strong ``ETag`` (releases never change) and
``Cache-Control: private, no-cache`` (every read is authorized and audited again).

The reads also answer a request without a token, as the public: only what is published to
``public`` (see :data:`policy.model.PUBLIC`); any other read is answered as a missing token.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from aggregation import definitions, formats, reads, releases, review
from aggregation.definition import IndicatorDefinition
from aggregation.models import Release
from aggregation.timing import padded_seconds
from api import metrics
from api.deps import (
    AuditedRoute,
    Policy,
    UnitOfWork,
    audited,
    record_refusal,
    require,
    require_or_public,
    run_unit_of_work,
    state,
)
from api.errors import stored_problem_response
from api.routers.jobs import job_document, job_headers
from api.schemas import (
    MAX_PAGE,
    IndicatorOut,
    JobOut,
    ReleaseDocumentOut,
    ReleaseHeldOut,
    ReleaseIn,
    ReleasePreviewOut,
    ReleaseSummaryOut,
    SeriesOut,
)
from audit.actions import AuditAction
from core.context import RequestContext
from core.db import read_only
from core.errors import DomainError, InvalidInput
from jobs import service as job_service
from jobs.models import ACTIVE, FAILED, Job
from policy.engine import PolicySet

router = APIRouter(prefix="/v1", tags=["indicators"])
Writer = Annotated[RequestContext, Depends(require("indicators:write", write=True))]
# Reads of published indicators: with a token, or without one as the public (who reads
# only what is published to it; anything else is answered as a request without a token).
Reader = Annotated[RequestContext, Depends(require_or_public("indicators:read"))]

MEDIA = {
    "application/json": "json",
    "text/csv": "csv",
    "application/vnd.sdmx.data+csv": "sdmx",
}
CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "sdmx": formats.SDMX_CSV + "; charset=utf-8",
}


class NotAcceptable(DomainError):
    kind = "not-acceptable"
    title = "Not acceptable"


def negotiate(accept: str | None) -> str:
    """The format for an ``Accept`` header: the first acceptable one by quality."""
    if not accept:
        return "json"
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in ("*/*", "application/*"):
            choices.append((q, i, "json"))
        elif media == "text/*":
            choices.append((q, i, "csv"))
        elif media in MEDIA:
            choices.append((q, i, MEDIA[media]))
    choices = [c for c in choices if c[0] > 0]
    if not choices:
        raise NotAcceptable(
            "Acceptable types are application/json, text/csv and application/vnd.sdmx.data+csv; version=2.0.0."
        )
    return sorted(choices, key=lambda c: (-c[0], c[1]))[0][2]


MAX_FILTERS = 20
MAX_FILTER_VALUES = 1_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def parse_filters(
    raw: list[str], dimensions: tuple[str, ...] | list[str]
) -> dict[str, frozenset[str]]:
    """``dimension:value[,value...]`` items, in time linear in their length and bounded."""
    if len(raw) > MAX_FILTERS:
        raise InvalidInput(f"At most {MAX_FILTERS} filter parameters are accepted.")
    valid = ", ".join(dimensions) or "(none)"
    collected: dict[str, set[str]] = {}
    count = 0
    for item in raw:
        dim, sep, values = item.partition(":")
        if not sep or not values:
            raise InvalidInput(
                f"A filter is dimension:value[,value...]; the release's dimensions are {valid}."
            )
        if dim not in dimensions:
            named = f"'{dim}'" if _NAME.match(dim) else "the filter's dimension"
            raise InvalidInput(f"Unknown dimension {named}; the release's dimensions are {valid}.")
        parts = [v for v in values.split(",") if v]
        count += len(parts)
        if count > MAX_FILTER_VALUES:
            raise InvalidInput(f"Filters may list at most {MAX_FILTER_VALUES} values in all.")
        collected.setdefault(dim, set()).update(parts)
    return {dim: frozenset(values) for dim, values in collected.items()}


def _definition_out(version: int, definition: IndicatorDefinition) -> dict[str, Any]:
    return {"version": version, **definition.model_dump(mode="json", exclude_none=True)}


def _release_summary(session: Session, release: Release, *, reasons: bool) -> dict[str, Any]:
    rows = review.reviews_of(session, release.id)
    return {
        **review.release_summary(release),
        "review": review.summary(release, rows, reasons=reasons),
    }


@router.post(
    "/indicators",
    response_model=IndicatorOut,
    response_model_exclude_unset=True,
    status_code=201,
    summary="Define an indicator (checked against the agreements)",
    dependencies=[Depends(audited(AuditAction.INDICATOR_DEFINE, "indicator"))],
)
def define_indicator(
    body: IndicatorDefinition, session: UnitOfWork, ctx: Writer, policy: Policy
) -> dict[str, Any]:
    row = definitions.define(session, ctx, policy, body)
    return _definition_out(row.version, IndicatorDefinition.model_validate(row.definition))


@router.get(
    "/indicators",
    response_model=list[IndicatorOut],
    response_model_exclude_unset=True,
    summary="Indicator definitions",
)
def list_indicators(session: UnitOfWork, ctx: Reader) -> list[dict[str, Any]]:
    return [
        _definition_out(v.version, d)
        for v, d in definitions.list_definitions(session, reader=ctx.principal)
    ]


@router.get(
    "/indicators/{indicator_id}",
    response_model=IndicatorOut,
    response_model_exclude_unset=True,
    summary="One indicator definition",
)
def get_indicator(indicator_id: str, session: UnitOfWork, ctx: Reader) -> dict[str, Any]:
    version, definition = definitions.get_definition(session, indicator_id, reader=ctx.principal)
    return _definition_out(version.version, definition)


def _preview_out(preview: releases.ReleasePreview) -> dict[str, Any]:
    if preview.stored_release is not None:
        summary = (
            f"The same release is stored ({preview.stored_release}); it would be returned "
            "and no privacy budget would be charged."
        )
    elif preview.epsilon is None:
        summary = (
            f"A new release would be computed by {preview.method}; no privacy budget is charged."
        )
    else:
        summary = (
            f"A new release would be computed by differential privacy; computing it spends "
            f"epsilon {preview.epsilon:g} from each of {len(preview.charges)} privacy "
            "budget(s)."
        )
    return {
        "dry_run": True,
        "indicator": preview.indicator_id,
        "indicator_version": preview.indicator_version,
        "method": preview.method,
        "dimensions": list(preview.dimensions),
        "agreements": [{"agreement": a, "version": v} for a, v in preview.agreements],
        "outcome": "stored" if preview.stored_release is not None else "compute",
        "stored_release": preview.stored_release,
        "submissions": preview.submissions,
        "epsilon": preview.epsilon,
        "charges": preview.charges,
        "summary": summary,
    }


@router.post(
    "/indicators/{indicator_id}/releases",
    response_model=ReleaseDocumentOut | ReleasePreviewOut,
    response_model_exclude_unset=True,
    summary="Compute and publish a release (or get the stored one for the same request); "
    'with "dry_run": true, what it would do',
    description="The stored release for the same request is answered at once (200). Otherwise "
    "the release is computed by a background job: one that finishes within "
    "`BACKBONE_RELEASE_SYNC_SECONDS` (2 s by default) is answered as a release (201), a longer "
    "one 202 with the job (`Location: /v1/jobs/{id}`; poll it until it has succeeded or "
    "failed). The same request while its job is queued or running answers that job again. "
    "A request that is invalid or denied is refused at once, and nothing is queued. "
    "When a contributing agreement requires review by the data providers, the release is "
    "stored (and charged) and held: 202 with its state (`pending_review`) and the reviews, "
    "without cells; the same request while it is held returns it again (202). "
    'With `"dry_run": true` in the body the answer is 200 with a ReleasePreviewOut: the '
    "method, and for differential privacy the budgets it would charge, how much each, what is "
    "spent and what would remain; nothing is computed, stored or charged, and a request that "
    "would be refused is refused with the same problem document.",
    responses={
        201: {"model": ReleaseDocumentOut, "description": "A new release"},
        202: {
            "model": JobOut | ReleaseHeldOut,
            "description": "A job computing the release (JobOut, with `Location: "
            "/v1/jobs/{id}`), or the release stored and held for review (ReleaseHeldOut)",
        },
    },
    dependencies=[Depends(audited(AuditAction.RELEASE_CREATE, "indicator", "indicator_id"))],
)
async def create_release(
    indicator_id: str,
    request: Request,
    ctx: Writer,
    body: ReleaseIn | None = None,
) -> Response:
    st = state(request)
    req = releases.ReleaseRequest(
        dimensions=tuple(body.dimensions) if body and body.dimensions is not None else None,
        method=body.method if body else None,
    )
    if body is not None and body.dry_run:
        # A refused preview is audited as a preview. It is not padded to the time quantum:
        # it reads no record, so its duration cannot depend on the data.
        request.state.audit_action = AuditedRoute(
            AuditAction.RELEASE_PREVIEW, "indicator", "indicator_id"
        )
        preview = await run_in_threadpool(
            run_unit_of_work,
            request,
            lambda s: releases.preview_release(s, ctx, st.policies.get(s), indicator_id, req),
        )
        return JSONResponse(_preview_out(preview))
    started = time.monotonic()
    try:
        outcome = await run_in_threadpool(
            run_unit_of_work,
            request,
            lambda s: job_service.request_release(s, ctx, st.policies.get(s), indicator_id, req),
        )
        if isinstance(outcome, Release):
            metrics.release_answered(
                outcome.method, computed=False, seconds=time.monotonic() - started
            )
            return await _release_response(request, outcome, created=False)
        job, _new = outcome
        finished = await _finished_within(
            request, job.id, st.jobs.submit(job.id), st.settings.release_sync_seconds
        )
        if finished is None or finished.state in ACTIVE:
            return await run_in_threadpool(run_unit_of_work, request, _job_response(job.id))
        # A job's outcome is counted where the job ran, once (api.metrics.job_recorder), not
        # by each request that waited for it.
        if finished.state == FAILED:
            # The job has audited the refusal, as the request itself would have been.
            return stored_problem_response(finished.problem or {}, request.state.request_id)
        release = await run_in_threadpool(run_unit_of_work, request, _load_release(finished))
        return await _release_response(request, release, created=bool(finished.release_created))
    except DomainError:
        metrics.release_refused(req.method)
        raise
    finally:
        # Answered, or refused, on a quantum boundary: the computing time is not observable
        # (but by who may read /metrics, see BACKBONE_METRICS_ALLOW).
        elapsed = time.monotonic() - started
        await asyncio.sleep(padded_seconds(elapsed, st.settings.release_time_quantum) - elapsed)


async def _finished_within(
    request: Request, job_id: str, future: Future[str | None] | None, seconds: float
) -> Job | None:
    """The job once it has finished, or None if it has not within ``seconds``: awaited when it
    runs in this process, else polled (a worker elsewhere runs it)."""
    deadline = time.monotonic() + seconds
    if future is not None:
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), seconds)
        except TimeoutError:
            return None
    else:
        while True:
            job = await run_in_threadpool(run_unit_of_work, request, _load_job(job_id))
            if job.state not in ACTIVE:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(_POLL_SECONDS, left))
    return await run_in_threadpool(run_unit_of_work, request, _load_job(job_id))


_POLL_SECONDS = 0.1


def _load_job(job_id: str) -> Callable[[Session], Job]:
    def load(session: Session) -> Job:
        read_only(session)
        job = session.get(Job, job_id)
        assert job is not None
        return job

    return load


def _load_release(job: Job) -> Callable[[Session], Release]:
    def load(session: Session) -> Release:
        release = job_service.release_of(session, job)
        assert release is not None
        return release

    return load


def _job_response(job_id: str) -> Callable[[Session], Response]:
    def answer(session: Session) -> Response:
        read_only(session)
        job = session.get(Job, job_id)
        assert job is not None
        return JSONResponse(job_document(session, job), status_code=202, headers=job_headers(job))

    return answer


async def _release_response(request: Request, release: Release, *, created: bool) -> Response:
    st = state(request)
    if release.state != review.PUBLISHED:
        # Held (or objected to): its cells go to the reviewers only, never to the requester.
        held = await run_in_threadpool(
            run_unit_of_work, request, lambda s: _release_summary(s, release, reasons=True)
        )
        return JSONResponse(
            held, status_code=202, headers={"Location": f"/v1/releases/{release.id}"}
        )

    def render(session: Session) -> bytes:
        view = st.release_views.load(session, release.id)
        return st.rendered.render(view, "json", {}, 1, 100_000)[0]

    body_bytes = await run_in_threadpool(run_unit_of_work, request, render)
    return Response(
        body_bytes,
        status_code=201 if created else 200,
        media_type="application/json",
        headers={"Location": f"/v1/releases/{release.id}"},
    )


@router.get(
    "/indicators/{indicator_id}/releases",
    response_model=list[ReleaseSummaryOut],
    response_model_exclude_unset=True,
    summary="Releases of an indicator you may read",
    description=(
        "Published releases your organization is a recipient of, and those published to the "
        "public (without a token: those only). A caller who may request "
        "releases (`indicators:write`) also sees those held for review or objected to, with "
        "their state and reviews (never their cells)."
    ),
)
def list_releases(indicator_id: str, session: UnitOfWork, ctx: Reader) -> list[dict[str, Any]]:
    assert ctx.principal is not None
    definitions.get_definition(session, indicator_id, reader=ctx.principal)
    requester = "indicators:write" in ctx.principal.scopes
    review.settle_indicator(session, ctx, indicator_id)
    return [
        _release_summary(session, r, reasons=requester)
        for r in reads.list_releases(session, indicator_id, published_only=not requester)
        if (r.state == review.PUBLISHED and reads.may_list(ctx.principal, r.recipients))
        or (requester and r.state != review.PUBLISHED)
    ]


@router.get(
    "/indicators/{indicator_id}/series",
    response_model=SeriesOut,
    response_model_exclude_unset=True,
    summary="The indicator over time, with baseline and target",
    dependencies=[Depends(audited(AuditAction.RELEASE_READ, "indicator_series", "indicator_id"))],
)
def get_series(
    indicator_id: str,
    request: Request,
    session: UnitOfWork,
    ctx: Reader,
    policy: Policy,
    filter: Annotated[list[str] | None, Query(description="dimension:value; repeatable")] = None,
) -> dict[str, Any]:
    _version, definition = definitions.get_definition(session, indicator_id, reader=ctx.principal)
    filters = parse_filters(filter or [], definition.dimensions)
    return reads.series(session, ctx, policy, state(request).release_views, indicator_id, filters)


@router.get(
    "/releases/{release_id}",
    response_model=ReleaseDocumentOut,
    response_model_exclude_unset=True,
    summary="A release's cells (recipients only): JSON, CSV or SDMX-CSV by Accept",
    dependencies=[Depends(audited(AuditAction.RELEASE_READ, "release", "release_id"))],
    responses={
        200: {"content": {"text/csv": {}, formats.SDMX_CSV: {}}},
        304: {"description": "Not modified"},
    },
)
async def get_release(
    release_id: str,
    request: Request,
    ctx: Reader,
    filter: Annotated[
        list[str] | None, Query(description="dimension:value[,value]; repeatable")
    ] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=10_000)] = 2_000,
    format: Annotated[
        Literal["json", "csv", "sdmx"] | None,
        Query(
            description="json, csv or sdmx (SDMX-CSV 2.0): a download link, where a browser "
            "cannot set Accept; overrides Accept"
        ),
    ] = None,
) -> Response:
    fmt = format or negotiate(request.headers.get("accept"))
    st = state(request)
    # The hot path touches no database and no thread: the release and the agreements are held
    # in memory (releases never change; agreements are followed), only the audit event is
    # written, group-committed with those of concurrent reads.
    cached_view = st.release_views.cached(release_id)
    current_policy = st.policies.current()
    if cached_view is not None and current_policy is not None:
        view, policy = cached_view, current_policy
    else:

        def load(session: Session) -> tuple[reads.ReleaseView, PolicySet]:
            # A held release whose review now allows it is published here, on access.
            review.settle_release(session, ctx, release_id)
            return st.release_views.load(session, release_id), st.policies.get(session)

        view, policy = await run_in_threadpool(run_unit_of_work, request, load)
    try:
        decision = reads.authorize_read(ctx, policy, view)
        filters = parse_filters(filter or [], view.dimensions)
    except DomainError as exc:
        await run_in_threadpool(record_refusal, request, exc)
        raise
    rendered = st.rendered.cached(view, fmt, filters, page, page_size)
    if rendered is None:
        rendered = await run_in_threadpool(st.rendered.render, view, fmt, filters, page, page_size)
    body, etag, pager = rendered
    event = reads.read_record(view, decision)
    # The answer waits until its audit event is committed.
    batcher = st.audit_batcher
    if batcher.batching:
        await batcher.submit_async(ctx, event)
    else:
        await run_in_threadpool(lambda: batcher.submit(ctx, event).result())
    headers = {"ETag": etag, "Cache-Control": "private, no-cache", "Vary": "Accept, Authorization"}
    if pager["page"] < pager["page_count"]:
        query = request.url.include_query_params(page=page + 1, page_size=page_size)
        headers["Link"] = f'<{query.path}?{query.query}>; rel="next"'
    if format is not None and fmt != "json":
        # A link followed from a page saves a file named after the release.
        suffix = ".sdmx.csv" if fmt == "sdmx" else ".csv"
        headers["Content-Disposition"] = f'attachment; filename="{view.id}{suffix}"'
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=CONTENT_TYPES[fmt], headers=headers)
