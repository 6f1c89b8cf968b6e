"""Privacy budgets: spent and remaining privacy loss per agreement, dataset and period."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from aggregation.ledger import budgets
from agreements import repository as agreements
from agreements.service import in_force
from api.deps import UnitOfWork, require
from api.schemas import BudgetOut
from audit.actions import AuditAction
from audit.service import record_listing
from core.context import RequestContext
from policy.vocabulary import is_steward

router = APIRouter(prefix="/v1", tags=["indicators"])
Reader = Annotated[RequestContext, Depends(require("agreements:read"))]


@router.get(
    "/budgets",
    response_model=list[BudgetOut],
    response_model_exclude_unset=True,
    summary="Privacy budgets of the agreements you may read",
)
def list_budgets(session: UnitOfWork, ctx: Reader) -> list[dict[str, Any]]:
    assert ctx.principal is not None
    steward = is_steward(ctx.principal.organization_kind)
    visible = [
        a.id
        for a in agreements.visible_to(session, None if steward else ctx.principal.organization_id)
    ]
    items = budgets(session, None if steward else visible, in_force(session, visible, ctx.now))
    record_listing(
        session, ctx, AuditAction.AGREEMENT_READ, "privacy_budget", len(items), "privacy budgets"
    )
    return items
