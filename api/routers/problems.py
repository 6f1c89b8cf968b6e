"""Documentation of the problem types the API returns (the targets of their ``type`` URIs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.problems import PROBLEMS, problem_type
from api.schemas import ProblemTypeOut
from core.errors import NotFound

router = APIRouter(tags=["operations"])


def _out(kind: str) -> dict[str, Any]:
    spec = PROBLEMS[kind]
    return {
        "type": problem_type(kind),
        "status": spec.status,
        "title": spec.title,
        "description": spec.description,
    }


@router.get(
    "/problems",
    response_model=list[ProblemTypeOut],
    response_model_exclude_unset=True,
    summary="Every problem type this API returns",
)
def list_problems() -> list[dict[str, Any]]:
    return [_out(kind) for kind in sorted(PROBLEMS)]


@router.get(
    "/problems/{kind}",
    response_model=ProblemTypeOut,
    response_model_exclude_unset=True,
    summary="One problem type",
)
def get_problem(kind: str) -> dict[str, Any]:
    if kind not in PROBLEMS:
        raise NotFound("No such problem type.")
    return _out(kind)
