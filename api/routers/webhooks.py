"""Webhooks: an organization's subscriptions, their deliveries, replay; what it was notified of.

Managed by the organization's data manager (scope ``agreements:approve``) or an administrator
(``admin``, for any organization); the scope check is the service's, since either will do.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from api.deps import UnitOfWork, audited, require, state
from api.schemas import MAX_INDEX, DeliveryOut, DeliveryPage, WebhookIn, WebhookOut
from audit.actions import AuditAction
from core.context import RequestContext
from notifications import service
from notifications.addresses import AddressPolicy

router = APIRouter(prefix="/v1", tags=["webhooks"])
Manager = Annotated[RequestContext, Depends(require())]
Writer = Annotated[RequestContext, Depends(require(write=True))]
Cursor = Annotated[int | None, Query(ge=1, le=MAX_INDEX, description="the previous page's next")]
Limit = Annotated[int, Query(ge=1, le=500)]


@lru_cache(maxsize=8)
def _allowance(text: str) -> AddressPolicy:
    return AddressPolicy.parse(text)


def _page(rows: Any, limit: int) -> dict[str, Any]:
    items = [service.view(d, e) for d, e in rows]
    return {"items": items, "next": items[-1]["cursor"] if len(items) == limit else None}


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookOut,
    summary="Register a webhook (the signing secret is shown once)",
    dependencies=[Depends(audited(AuditAction.WEBHOOK_CREATE, "webhook"))],
)
def create_webhook(
    body: WebhookIn, request: Request, session: UnitOfWork, ctx: Writer
) -> dict[str, Any]:
    st = state(request)
    made = service.register(
        session,
        ctx,
        st.master,
        _allowance(st.settings.webhook_allow_hosts),
        url=body.url,
        event_types=body.event_types,
        organization_id=body.organization,
        description=body.description,
    )
    return {**service.subscription_view(made.subscription), "secret": made.secret}


@router.get("/webhooks", response_model=list[WebhookOut], summary="Your organization's webhooks")
def list_webhooks(session: UnitOfWork, ctx: Manager) -> list[dict[str, Any]]:
    return [service.subscription_view(row) for row in service.listing(session, ctx)]


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut, summary="One webhook")
def get_webhook(webhook_id: str, session: UnitOfWork, ctx: Manager) -> dict[str, Any]:
    return service.subscription_view(service.get(session, ctx, webhook_id))


@router.delete(
    "/webhooks/{webhook_id}",
    response_model=WebhookOut,
    summary="Delete a webhook (what it was still to receive is cancelled)",
    dependencies=[Depends(audited(AuditAction.WEBHOOK_DELETE, "webhook", "webhook_id"))],
)
def delete_webhook(webhook_id: str, session: UnitOfWork, ctx: Writer) -> dict[str, Any]:
    return service.subscription_view(service.delete(session, ctx, webhook_id))


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    summary="A webhook's deliveries, newest event first",
)
def list_deliveries(
    webhook_id: str,
    session: UnitOfWork,
    ctx: Manager,
    limit: Limit = 100,
    before: Cursor = None,
) -> dict[str, Any]:
    return _page(service.deliveries(session, ctx, webhook_id, limit, before), limit)


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
    response_model=DeliveryOut,
    summary="Send a delivered or failed delivery again",
    dependencies=[Depends(audited(AuditAction.WEBHOOK_REPLAY, "webhook_delivery", "delivery_id"))],
)
def replay_delivery(
    webhook_id: str, delivery_id: str, session: UnitOfWork, ctx: Writer
) -> dict[str, Any]:
    delivery = service.replay(session, ctx, webhook_id, delivery_id)
    event = service.event_of(session, delivery)
    return service.view(delivery, event)


@router.get(
    "/notifications",
    response_model=DeliveryPage,
    summary="What your organization was notified of (undeliverable ones included)",
)
def list_notifications(
    session: UnitOfWork, ctx: Manager, limit: Limit = 100, before: Cursor = None
) -> dict[str, Any]:
    return _page(service.notifications(session, ctx, limit, before), limit)
