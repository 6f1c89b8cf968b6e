"""Performance measures of partners' programs (Results-Based Accountability): how much did we
do, how well did we do it, is anyone better off; each with its series for the caller."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from aggregation import performance
from api.deps import Policy, UnitOfWork, audited, require, state
from api.schemas import PerformanceMeasureOut
from audit.actions import AuditAction
from core.context import RequestContext

router = APIRouter(prefix="/v1", tags=["indicators"])
Reader = Annotated[RequestContext, Depends(require("indicators:read"))]
SLUG = r"^[a-z0-9][a-z0-9._-]{0,63}$"


@router.get(
    "/performance-measures",
    response_model=list[PerformanceMeasureOut],
    response_model_exclude_unset=True,
    summary="Performance measures of the programs you may read, with their series",
    description=(
        "The performance measures of partners' programs that your organization is a recipient "
        "of: your own programs' and those other partners share with you for peer learning. "
        "Grouped by program, in the order how much, how well, better off; every series read "
        "is authorized and audited."
    ),
    dependencies=[Depends(audited(AuditAction.RELEASE_READ, "performance_measures"))],
)
def list_performance_measures(
    request: Request,
    session: UnitOfWork,
    ctx: Reader,
    policy: Policy,
    program: Annotated[str | None, Query(pattern=SLUG, description="one program")] = None,
    organization: Annotated[
        str | None, Query(pattern=SLUG, description="the programs one organization runs")
    ] = None,
) -> list[dict[str, Any]]:
    measures = performance.list_measures(
        session,
        ctx,
        policy,
        state(request).release_views,
        program=program,
        organization=organization,
    )
    return [m.to_dict() for m in measures]
