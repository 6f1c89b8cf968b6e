"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import state
from api.readiness import Readiness, migration_state
from api.schemas import HealthOut, ReadyOut
from audit.integrity import IntegrityWatch

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
    readiness: Readiness = request.app.state.readiness
    ok, checks = migration_state(state(request).sessions)
    if ok and not readiness.started:
        # The database has become usable since start-up: finish starting now.
        ok = readiness.try_start()
    if ok:
        # The audit log re-hashes from its rows (and no checkpoint was refused): an altered
        # log takes the service out of rotation until an operator has looked.
        watch: IntegrityWatch = request.app.state.audit_watch
        with state(request).sessions() as session:
            problem = watch.check(session)
        checks["audit_log"] = "ok" if problem is None else f"integrity check failed: {problem}"
        ok = problem is None
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)
