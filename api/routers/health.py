"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import state
from api.schemas import HealthOut, ReadyOut
from core.migrate import head_revision

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    response_model=HealthOut,
    response_model_exclude_unset=True,
    summary="The process is up",
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyOut,
    response_model_exclude_unset=True,
    summary="The database is reachable and migrated to head",
)
def readyz(request: Request) -> Any:
    st = state(request)
    checks: dict[str, str] = {}
    ok = True
    try:
        with st.sessions() as session:
            current = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        checks["database"] = "ok"
        head = head_revision()
        checks["migrations"] = "ok" if current == head else f"at {current}, head is {head}"
        ok = current == head
    except Exception:
        checks["database"] = "unreachable or not migrated"
        ok = False
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)
