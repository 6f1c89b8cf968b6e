"""The data managers' webhooks: their organization's subscriptions, one made with its signing
secret shown once, deleted after a confirmation, and each one's deliveries (state, attempts, the
next retry) with replay of a delivered or failed one.

Every page calls what the JSON route of :mod:`api.routers.webhooks` calls (the services of
:mod:`notifications.service`, which scope a data manager to their own organization: another
organization's webhook is answered as a missing one) with the signed-in person's request
context, under the same audited action.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.console.auth import check_csrf, signed_in
from api.console.pages import confirm_page, confirmed, page
from api.deps import UnitOfWork, audited, state
from api.routers import webhooks as webhooks_api
from api.schemas import MAX_INDEX, WebhookIn
from audit.actions import AuditAction
from core.context import RequestContext
from core.errors import InvalidInput
from notifications import service
from notifications.events import EventType

router = APIRouter(include_in_schema=False)
# The scope with which the API lets a data manager manage its organization's webhooks.
Manager = Annotated[RequestContext, Depends(signed_in(service.MANAGE_SCOPE))]
PAGE_SIZE = 50
MAX_ID = 64
DONE = {
    "deleted": "The webhook is deleted: nothing more is sent to it, and what was waiting is "
    "cancelled.",
    "replayed": "The delivery is queued to be sent again (with the same webhook-id, so that the "
    "receiver can tell it is the same event).",
}
EVENTS = {
    EventType.SUBMISSION_ACCEPTED: "a submission of your organization was stored",
    EventType.SUBMISSION_REJECTED: "a submission of your organization was refused",
    EventType.AGREEMENT_AWAITING_APPROVAL: "an agreement version awaits your organization's "
    "approval",
    EventType.AGREEMENT_EXPIRING: "an agreement is about to expire",
    EventType.AGREEMENT_SUSPENDED: "an agreement was suspended",
    EventType.AGREEMENT_TERMINATED: "an agreement was terminated",
    EventType.RECORDS_PURGED: "records were destroyed under an agreement's retention terms",
    EventType.BUDGET_THRESHOLD_REACHED: "a privacy budget reached its warning threshold",
    EventType.BUDGET_EXHAUSTED: "a privacy budget is spent",
    EventType.RELEASE_PUBLISHED: "a release computed from your data was published",
    EventType.RELEASE_AWAITING_REVIEW: "a release awaits your organization's review",
    EventType.REVIEW_DECIDED: "a reviewer decided on a held release",
}


def _id(value: str, name: str) -> str:
    if len(value) > MAX_ID:
        raise InvalidInput(f"A {name} id is at most {MAX_ID} characters.")
    return value


def _redirect(path: str, done: str) -> Response:
    response = RedirectResponse(f"{path}?done={done}", status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


def _count_write(request: Request, ctx: RequestContext) -> None:
    """A form that changes something counts against the write limit, as the API route does."""
    assert ctx.principal is not None
    st = state(request)
    st.limiter.hit(st.limiter.write_limit, "write", ctx.principal.client_id)


@router.get("/console/webhooks", name="console_dm_webhooks")
def webhooks(
    request: Request, session: UnitOfWork, ctx: Manager, done: str | None = None
) -> Response:
    items = webhooks_api.list_webhooks(session, ctx)  # GET /v1/webhooks
    return page(
        request,
        "console/dm/webhooks.html",
        title="Webhooks",
        section="console_dm_webhooks",
        items=items,
        events=[(e.value, text) for e, text in EVENTS.items()],
        done=DONE.get(done or "") if done == "deleted" else None,
    )


@router.post(
    "/console/webhooks",
    name="console_dm_webhook_create",
    dependencies=[Depends(audited(AuditAction.WEBHOOK_CREATE, "webhook"))],
)
def create_webhook(
    request: Request,
    session: UnitOfWork,
    ctx: Manager,
    csrf: Annotated[str, Form()] = "",
    url: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    event_types: Annotated[list[str] | None, Form(max_length=64)] = None,
) -> Response:
    # A plain function: registration resolves the address (DNS), which must not block the loop.
    check_csrf(request, csrf)
    _count_write(request, ctx)
    if event_types is not None and len(event_types) > len(EVENTS):
        raise InvalidInput("Choose each event at most once.")
    if not event_types:
        raise InvalidInput("Choose at least one event to be told of.")
    try:
        body = WebhookIn(
            url=url.strip(), event_types=event_types, description=description.strip() or None
        )
    except ValidationError:
        raise InvalidInput(
            "Give the address (at most 2048 characters), at least one event and a description "
            "of at most 200 characters."
        ) from None
    # POST /v1/webhooks itself: the same address checks, the same audit event.
    made = webhooks_api.create_webhook(body, request, session, ctx)
    return page(
        request,
        "console/dm/webhook_secret.html",
        201,
        title="Webhook registered",
        section="console_dm_webhooks",
        section_title="Webhooks",
        hook=made,
    )


@router.get("/console/webhooks/{webhook_id}", name="console_dm_webhook")
def webhook(
    request: Request,
    webhook_id: str,
    session: UnitOfWork,
    ctx: Manager,
    before: str | None = None,
    done: str | None = None,
) -> Response:
    _id(webhook_id, "webhook")
    cursor = None
    if before:
        if not before.isdigit() or not 1 <= int(before) <= MAX_INDEX:
            raise InvalidInput("before must be the previous page's cursor.")
        cursor = int(before)
    hook = webhooks_api.get_webhook(webhook_id, session, ctx)
    shown = webhooks_api.list_deliveries(webhook_id, session, ctx, PAGE_SIZE, cursor)
    return page(
        request,
        "console/dm/webhook.html",
        title=hook["description"] or hook["url"],
        section="console_dm_webhooks",
        section_title="Webhooks",
        hook=hook,
        deliveries=shown["items"],
        next=shown["next"],
        done=DONE.get(done or "") if done == "replayed" else None,
        replayable=(service.DELIVERED, service.FAILED),
    )


@router.post(
    "/console/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
    name="console_dm_webhook_replay",
    dependencies=[Depends(audited(AuditAction.WEBHOOK_REPLAY, "webhook_delivery", "delivery_id"))],
)
def replay(
    request: Request,
    webhook_id: str,
    delivery_id: str,
    session: UnitOfWork,
    ctx: Manager,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    _count_write(request, ctx)
    webhooks_api.replay_delivery(
        _id(webhook_id, "webhook"), _id(delivery_id, "delivery"), session, ctx
    )
    return _redirect(request.url_for("console_dm_webhook", webhook_id=webhook_id).path, "replayed")


@router.get("/console/webhooks/{webhook_id}/delete", name="console_dm_webhook_delete_confirm")
def delete_confirm(
    request: Request, webhook_id: str, session: UnitOfWork, ctx: Manager
) -> Response:
    hook = webhooks_api.get_webhook(_id(webhook_id, "webhook"), session, ctx)
    back = request.url_for("console_dm_webhook", webhook_id=hook["id"]).path
    return confirm_page(
        request,
        title="Delete this webhook?",
        facts=[
            ("Address", hook["url"]),
            ("Events", ", ".join(hook["event_types"])),
            ("Description", hook["description"] or "None"),
        ],
        explanation=[
            "Nothing more is sent to this address from now on, and the deliveries still waiting "
            "to be sent or retried are cancelled. Deliveries already made stay in the record "
            "of what your organization was notified of.",
            "It cannot be undone: to be told again, register a new webhook (with a new secret).",
        ],
        action_url=request.url_for("console_dm_webhook_delete", webhook_id=hook["id"]).path,
        button="Delete the webhook",
        back_url=back,
        back_text="Keep it and go back",
        section="console_dm_webhooks",
        section_title="Webhooks",
        confirm=("delete", "I understand that nothing more is sent to this address."),
    )


@router.post(
    "/console/webhooks/{webhook_id}/delete",
    name="console_dm_webhook_delete",
    dependencies=[Depends(audited(AuditAction.WEBHOOK_DELETE, "webhook", "webhook_id"))],
)
def delete(
    request: Request,
    webhook_id: str,
    session: UnitOfWork,
    ctx: Manager,
    csrf: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    confirmed(confirm, "delete", "Tick the box to confirm that the webhook is deleted.")
    _count_write(request, ctx)
    webhooks_api.delete_webhook(_id(webhook_id, "webhook"), session, ctx)
    return _redirect(request.url_for("console_dm_webhooks").path, "deleted")
