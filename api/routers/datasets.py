"""Datasets: what a partner sends, as a Frictionless Table Schema, and a CSV template.

Read by the clients that may submit to a dataset (``records:write``) and by the parties' and the
backbone's data managers (``agreements:read``); see :mod:`records.datasets` for who sees what.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from api.deps import Policy, UnitOfWork, audited, require_any
from api.schemas import DatasetOut
from audit.actions import AuditAction
from core.context import RequestContext
from records import datasets

router = APIRouter(prefix="/v1", tags=["datasets"])
Reader = Annotated[RequestContext, Depends(require_any("records:write", "agreements:read"))]
DatasetName = Annotated[str, Path(max_length=64)]


@router.get(
    "/datasets",
    response_model=list[DatasetOut],
    summary="The datasets you may submit to or whose agreement you may read",
    description="A token with records:write or agreements:read. Each dataset as a Frictionless "
    "Table Schema (schema) with Backbone's terms under x-backbone, the governing agreement "
    "version and the periods open for submission.",
    dependencies=[Depends(audited(AuditAction.DATASET_LIST, "dataset"))],
)
def list_datasets(session: UnitOfWork, ctx: Reader, policy: Policy) -> list[dict[str, Any]]:
    return datasets.list_datasets(session, ctx, policy)


@router.get(
    "/datasets/{dataset}",
    response_model=DatasetOut,
    summary="One dataset: its fields as a Frictionless Table Schema, agreement and periods",
    description="A token with records:write or agreements:read. 404 for a dataset that does "
    "not exist and for one not open to you alike.",
    dependencies=[Depends(audited(AuditAction.DATASET_READ, "dataset", "dataset"))],
)
def get_dataset(
    dataset: DatasetName, session: UnitOfWork, ctx: Reader, policy: Policy
) -> dict[str, Any]:
    return datasets.get_dataset(session, ctx, policy, dataset)


@router.get(
    "/datasets/{dataset}/template",
    summary="A CSV template: the header and one synthetic record that passes validation",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    dependencies=[Depends(audited(AuditAction.DATASET_READ, "dataset", "dataset"))],
)
def get_template(
    dataset: DatasetName, session: UnitOfWork, ctx: Reader, policy: Policy
) -> Response:
    body = datasets.template(session, ctx, policy, dataset)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{dataset}-template.csv"'},
    )
