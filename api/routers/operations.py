"""Prometheus metrics at ``/metrics`` (present only when BACKBONE_METRICS_ENABLED is true)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.metrics import MetricsEndpoint
from api.openapi import PROBLEM

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (the addresses in BACKBONE_METRICS_ALLOW only)",
    description="The Prometheus text exposition format: request rates and latencies by route "
    "template, submissions and rows by outcome, releases by method and outcome and their "
    "computing time, and, read from the database at each scrape, privacy budgets per "
    "agreement, dataset and period, the audit log's size and its latest checkpoint. Served only "
    "to clients connecting directly from an address in BACKBONE_METRICS_ALLOW (403 otherwise, "
    "and for any request that came through a proxy).",
    responses={
        200: {
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            }
        },
        403: {
            "description": "Not an address allowed to read metrics, or the request was proxied",
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    },
)
def metrics(request: Request) -> Response:
    endpoint: MetricsEndpoint = request.app.state.metrics
    endpoint.check(request.scope)
    body, content_type = endpoint.render(request.headers.get("accept", ""))
    return Response(body, headers={"Content-Type": content_type})
