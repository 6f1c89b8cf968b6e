"""Who the caller is: a protected route with no scope requirement, for checking a token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api.deps import require
from api.schemas import WhoAmIOut
from core.context import RequestContext

router = APIRouter(prefix="/v1", tags=["operations"])


@router.get(
    "/whoami",
    response_model=WhoAmIOut,
    response_model_exclude_unset=True,
    summary="The client, organization and scopes of the access token",
)
async def whoami(ctx: Annotated[RequestContext, Depends(require())]) -> dict[str, Any]:
    assert ctx.principal is not None
    p = ctx.principal
    return {
        "client_id": p.client_id,
        "organization": p.organization_id,
        "organization_kind": p.organization_kind,
        "scopes": sorted(p.scopes),
    }
