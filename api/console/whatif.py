"""The data managers' "what if" form over the policy engine: choose an action, the agreement or
datasets, the purpose, the fields and so on, and read the decision the engine would take, with
its reasons (the deciding rules, the failed constraints with what was expected against what was
asked) in plain language. It never does anything: it is ``POST /v1/policy/decide``, through
that route's own function (:func:`api.routers.policy.decide_what_if`), under its audited action.

The form is a GET: it changes nothing but the audit log (each decision is an event naming the
person, as the API's is), and its URL can be kept or shared to ask the same question again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api.console.auth import signed_in
from api.console.pages import page
from api.deps import Policy, UnitOfWork, audited
from api.routers import agreements as agreements_api
from api.routers import policy as policy_api
from api.schemas import DecideIn
from audit.actions import AuditAction
from core.context import RequestContext
from core.errors import InvalidInput
from policy.vocabulary import GEOGRAPHY_LEVELS, PURPOSES, DisclosureMethod

router = APIRouter(include_in_schema=False)
# The scope of POST /v1/policy/decide.
Reader = Annotated[RequestContext, Depends(signed_in("agreements:read"))]
MAX_FIELD = 2000
MAX_ITEMS = 100
# What each action means, for a person choosing one (the engine's closed vocabulary).
ACTION_TEXT = {
    "submit": "send record-level data into the service",
    "compute": "use record-level data to compute aggregates",
    "publish": "release aggregates to recipients",
    "link": "join with other datasets through linkage tokens",
    "read": "read the agreement or a release as a recipient",
    "export_records": "export record-level data (Backbone never permits it)",
    "redisclose": "disclose onward, as a recipient",
}


def _text(value: str | None, name: str) -> str | None:
    text = (value or "").strip()
    if len(text) > MAX_FIELD:
        raise InvalidInput(f"{name} is too long.")
    return text or None


def _list(value: str | None, name: str) -> list[str] | None:
    """A comma- or line-separated list from a form field; None when left empty."""
    text = _text(value, name)
    if text is None:
        return None
    items = [v.strip() for v in text.replace("\n", ",").split(",") if v.strip()]
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"{name} lists at most {MAX_ITEMS} items.")
    return items


def _question(params: dict[str, str | None]) -> DecideIn:
    if params["action"] not in ACTION_TEXT:
        raise InvalidInput("Choose an action.")
    if params["method"] not in (None, *(m.value for m in DisclosureMethod)):
        raise InvalidInput("Choose a disclosure method from the list.")
    if params["geography"] not in (None, *GEOGRAPHY_LEVELS):
        raise InvalidInput("Choose a geography from the list.")
    if params["purpose"] not in (None, *PURPOSES):
        raise InvalidInput("Choose a purpose from the list.")
    if not params["agreement"] and not params["datasets"]:
        raise InvalidInput("Name an agreement or at least one dataset.")
    try:
        return DecideIn.model_validate(
            {
                "client_id": params["client_id"],
                "action": params["action"],
                "resource": {
                    "agreement": params["agreement"],
                    "datasets": _list(params["datasets"], "Datasets") or [],
                    "fields": _list(params["fields"], "Fields"),
                    "dimensions": _list(params["dimensions"], "Dimensions"),
                    "geography": params["geography"],
                    "method": params["method"],
                    "linked_datasets": _list(params["linked_datasets"], "Linked datasets") or [],
                },
                "context": {
                    "purpose": params["purpose"],
                    "recipients": _list(params["recipients"], "Recipients"),
                },
                "at": params["at"],
            }
        )
    except ValidationError as exc:
        names = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise InvalidInput(
            "Check these fields: " + ", ".join(names[:10]) + " (a time needs a time zone, "
            "for example 2026-12-01T09:00:00Z)."
        ) from None


@router.get(
    "/console/what-if",
    name="console_dm_what_if",
    dependencies=[Depends(audited(AuditAction.POLICY_DECIDE, "policy"))],
)
def what_if(
    request: Request,
    session: UnitOfWork,
    ctx: Reader,
    policy: Policy,
    action: str | None = None,
    agreement: str | None = None,
    datasets: str | None = None,
    fields: str | None = None,
    dimensions: str | None = None,
    geography: str | None = None,
    method: str | None = None,
    linked_datasets: str | None = None,
    purpose: str | None = None,
    recipients: str | None = None,
    client_id: str | None = None,
    at: str | None = None,
) -> Response:
    form: dict[str, str | None] = {
        "action": _text(action, "Action"),
        "agreement": _text(agreement, "Agreement"),
        "datasets": _text(datasets, "Datasets"),
        "fields": _text(fields, "Fields"),
        "dimensions": _text(dimensions, "Dimensions"),
        "geography": _text(geography, "Geography"),
        "method": _text(method, "Method"),
        "linked_datasets": _text(linked_datasets, "Linked datasets"),
        "purpose": _text(purpose, "Purpose"),
        "recipients": _text(recipients, "Recipients"),
        "client_id": _text(client_id, "Client"),
        "at": _text(at, "At"),
    }
    answer: dict[str, Any] | None = None
    if form["action"] is not None:
        answer = policy_api.decide_what_if(_question(form), request, session, ctx, policy)
    return page(
        request,
        "console/dm/what_if.html",
        title="What if…",
        section="console_dm_what_if",
        form=form,
        answer=answer,
        decision=answer["decision"] if answer else None,
        actions=list(ACTION_TEXT.items()),
        agreements=agreements_api.list_agreements(session, ctx),
        purposes=sorted(PURPOSES),
        geographies=GEOGRAPHY_LEVELS,
        methods=[m.value for m in DisclosureMethod],
    )
