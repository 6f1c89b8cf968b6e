"""Results-Based Accountability (``results.service``): results and their indicators with the
values the caller may read, stories behind the curve and their versions, what works, partners'
roles and commitments, and the action plan.

Reads need ``indicators:read``; writes need ``results:write``, and the service checks whose the
object is (the backbone writes results, strategies and the action plan; an organization its own
stories, role and commitments)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request

from api.deps import Policy, UnitOfWork, audited, require, require_or_public, state
from audit.actions import AuditAction
from core.context import RequestContext
from results import service
from results.documents import (
    MAX_ITEMS,
    ActionIn,
    ActionStatusIn,
    PartnerRoleIn,
    ResultIn,
    ResultIndicatorIn,
    StoryIn,
    StoryVersionIn,
    StrategyIn,
)
from results.views import (
    ActionView,
    PartnerRoleView,
    ResultDetail,
    ResultInfo,
    ResultSummary,
    StoryView,
    StrategyView,
)

router = APIRouter(prefix="/v1", tags=["results"])
# Without a token, the public reads the public results and their public stories.
Reader = Annotated[RequestContext, Depends(require_or_public("indicators:read"))]
Writer = Annotated[RequestContext, Depends(require("results:write", write=True))]
# Path segments are bounded like the ids they name, so that a refusal audits a bounded value.
ResultId = Annotated[str, Path(max_length=64)]
ObjectId = Annotated[str, Path(max_length=64)]


@router.get(
    "/results",
    response_model=list[ResultSummary],
    summary="Results, each with its indicators (values as you may read them)",
    dependencies=[Depends(audited(AuditAction.RESULT_READ, "result"))],
)
def list_results(
    request: Request, session: UnitOfWork, ctx: Reader, policy: Policy
) -> list[ResultSummary]:
    return service.list_results(session, ctx, policy, state(request).release_views)


@router.post(
    "/results",
    response_model=ResultInfo,
    status_code=201,
    summary="Create a result with its indicators (the backbone)",
    dependencies=[Depends(audited(AuditAction.RESULT_WRITE, "result"))],
)
def create_result(body: ResultIn, session: UnitOfWork, ctx: Writer) -> ResultInfo:
    return service.create_result(session, ctx, body)


@router.get(
    "/results/{result_id}",
    response_model=ResultDetail,
    summary="A result: indicators with series, trend and forecast; stories; what works; "
    "partners; action plan",
    dependencies=[Depends(audited(AuditAction.RESULT_READ, "result", "result_id"))],
)
def get_result(
    result_id: ResultId, request: Request, session: UnitOfWork, ctx: Reader, policy: Policy
) -> ResultDetail:
    return service.get_result(session, ctx, policy, state(request).release_views, result_id)


@router.put(
    "/results/{result_id}/indicators",
    response_model=ResultInfo,
    summary="Replace a result's indicators with this ordered list (the backbone)",
    dependencies=[Depends(audited(AuditAction.RESULT_WRITE, "result_indicators", "result_id"))],
)
def set_indicators(
    result_id: ResultId,
    body: Annotated[list[ResultIndicatorIn], Body(max_length=MAX_ITEMS)],
    session: UnitOfWork,
    ctx: Writer,
) -> ResultInfo:
    return service.set_indicators(session, ctx, result_id, body)


@router.post(
    "/results/{result_id}/stories",
    response_model=StoryView,
    status_code=201,
    summary="Write a story behind the curve (your organization alone may revise it)",
    dependencies=[Depends(audited(AuditAction.STORY_WRITE, "result", "result_id"))],
)
def add_story(result_id: ResultId, body: StoryIn, session: UnitOfWork, ctx: Writer) -> StoryView:
    return service.add_story(session, ctx, result_id, body)


@router.get(
    "/stories/{story_id}",
    response_model=StoryView,
    summary="A story behind the curve with every version, the current one first",
    dependencies=[Depends(audited(AuditAction.STORY_READ, "story", "story_id"))],
)
def get_story(story_id: ObjectId, session: UnitOfWork, ctx: Reader) -> StoryView:
    return service.get_story(session, ctx, story_id)


@router.post(
    "/stories/{story_id}/versions",
    response_model=StoryView,
    status_code=201,
    summary="Revise a story your organization wrote (a new current version)",
    dependencies=[Depends(audited(AuditAction.STORY_WRITE, "story", "story_id"))],
)
def add_story_version(
    story_id: ObjectId, body: StoryVersionIn, session: UnitOfWork, ctx: Writer
) -> StoryView:
    return service.add_story_version(session, ctx, story_id, body)


@router.get(
    "/indicators/{indicator_id}/stories",
    response_model=list[StoryView],
    summary="The stories behind an indicator's curve (current versions)",
    dependencies=[Depends(audited(AuditAction.STORY_READ, "indicator_stories", "indicator_id"))],
)
def stories_for_indicator(
    indicator_id: ObjectId, session: UnitOfWork, ctx: Reader
) -> list[StoryView]:
    return service.stories_for_indicator(session, ctx, indicator_id)


@router.get(
    "/indicators/{indicator_id}/results",
    response_model=list[ResultInfo],
    summary="The results an indicator belongs to",
    dependencies=[Depends(audited(AuditAction.RESULT_READ, "indicator_results", "indicator_id"))],
)
def results_for_indicator(
    indicator_id: ObjectId, session: UnitOfWork, ctx: Reader
) -> list[ResultInfo]:
    return service.results_for_indicator(session, ctx, indicator_id)


@router.post(
    "/results/{result_id}/strategies",
    response_model=StrategyView,
    status_code=201,
    summary="Add a strategy (what works) with its evidence and partners (the backbone)",
    dependencies=[
        Depends(audited(AuditAction.RESULT_STRATEGY_WRITE, "result_strategy", "result_id"))
    ],
)
def add_strategy(
    result_id: ResultId, body: StrategyIn, session: UnitOfWork, ctx: Writer
) -> StrategyView:
    return service.add_strategy(session, ctx, result_id, body)


@router.put(
    "/results/{result_id}/partners/{organization}",
    response_model=PartnerRoleView,
    summary="Set an organization's role and commitments (the organization itself, or the backbone)",
    dependencies=[
        Depends(audited(AuditAction.RESULT_PARTNER_WRITE, "result_partner", "result_id"))
    ],
)
def set_partner_role(
    result_id: ResultId,
    organization: ObjectId,
    body: PartnerRoleIn,
    session: UnitOfWork,
    ctx: Writer,
) -> PartnerRoleView:
    return service.set_partner_role(session, ctx, result_id, organization, body)


@router.post(
    "/results/{result_id}/actions",
    response_model=ActionView,
    status_code=201,
    summary="Add an item to a result's action plan (the backbone)",
    dependencies=[Depends(audited(AuditAction.RESULT_ACTION_WRITE, "result_action", "result_id"))],
)
def add_action(result_id: ResultId, body: ActionIn, session: UnitOfWork, ctx: Writer) -> ActionView:
    return service.add_action(session, ctx, result_id, body)


@router.patch(
    "/actions/{action_id}",
    response_model=ActionView,
    summary="Move an action plan item to a new status (the backbone)",
    dependencies=[Depends(audited(AuditAction.RESULT_ACTION_WRITE, "result_action", "action_id"))],
)
def set_action_status(
    action_id: ObjectId, body: ActionStatusIn, session: UnitOfWork, ctx: Writer
) -> ActionView:
    return service.set_action_status(session, ctx, action_id, body.status)
