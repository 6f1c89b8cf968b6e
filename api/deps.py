"""Request dependencies: the unit of work, authentication with all-of scopes, request context.

The unit of work commits once after the route returns and before the response is sent
(``scope="function"``), so an acknowledged request is durable. When a domain error escapes, the
work is rolled back and, for audited routes, the refusal itself is recorded in a fresh transaction:
denials leave an audit event too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.ratelimit import source_address
from api.state import AppState
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import ConcealedObject, DomainError, Forbidden, PolicyDenied
from identity.errors import AuthenticationFailed, InsufficientScope, missing_token
from identity.tokens import require_scopes
from policy.engine import PolicySet
from policy.model import PUBLIC_PRINCIPAL, Principal
from records.errors import SubmissionRejected

log = logging.getLogger("backbone.api")
T = TypeVar("T")


def state(request: Request) -> AppState:
    s: AppState = request.app.state.backbone
    return s


@dataclass(frozen=True)
class AuditedRoute:
    action: AuditAction
    resource_type: str | None = None
    resource_param: str | None = None


def audited(
    action: AuditAction, resource_type: str | None = None, resource_param: str | None = None
) -> Callable[[Request], Awaitable[None]]:
    """Declare what an endpoint does, so that a refusal is audited under that action."""
    spec = AuditedRoute(action, resource_type, resource_param)

    async def dependency(request: Request) -> None:  # async: a marker needs no thread hop
        request.state.audit_action = spec

    return dependency


def record_refusal(request: Request, exc: DomainError) -> None:
    """Audit a refused request of an audited route, once, in a transaction of its own (the
    refused work itself has been rolled back). Unauthenticated requests are not audited: they
    identify no one, and logging them would let anyone grow the log at will."""
    spec: AuditedRoute | None = getattr(request.state, "audit_action", None)
    if spec is None or isinstance(exc, AuthenticationFailed) or getattr(exc, "audited", False):
        return
    exc.audited = True  # type: ignore[attr-defined]
    st = state(request)
    principal: Principal | None = getattr(request.state, "principal", None)
    ctx = RequestContext(request.state.request_id, st.clock(), principal)
    resource_id = request.path_params.get(spec.resource_param) if spec.resource_param else None
    decision = exc.decision if isinstance(exc, PolicyDenied) else None
    outcome = "denied" if isinstance(exc, Forbidden | ConcealedObject) else "rejected"
    try:
        with st.sessions() as session:
            record(
                session,
                ctx,
                AuditRecord(
                    action=spec.action,
                    outcome=outcome,
                    resource_type=spec.resource_type,
                    resource_id=str(resource_id)[:128] if resource_id else None,
                    decision=decision,
                    detail=exc.kind,
                ),
            )
            if isinstance(exc, SubmissionRejected) and exc.notice is not None:
                exc.notice(session, ctx)
            session.commit()
    except Exception:  # the refusal stands even if auditing it failed
        log.exception("could not audit a refused request")


def after_commit(request: Request, work: Callable[[], None]) -> None:
    """Do ``work`` once the request's unit of work has committed (never if it fails)."""
    pending: list[Callable[[], None]] | None = getattr(request.state, "after_commit", None)
    if pending is None:
        request.state.after_commit = pending = []
    pending.append(work)


def _after_commit(request: Request, session: Session) -> None:
    # A revocation, a disabled client or an agreement's new status takes effect in this worker
    # before the answer is sent; other workers follow within BACKBONE_AUTH_SYNC_SECONDS.
    st = state(request)
    if session.info.get("auth_changed"):
        st.auth.sync()
    if session.info.get("policy_changed"):
        st.policies.refresh()
    for work in getattr(request.state, "after_commit", ()):
        work()


@contextmanager
def _unit(request: Request) -> Iterator[Session]:
    session = state(request).sessions()
    try:
        yield session
        session.commit()
        _after_commit(request, session)
    except DomainError as exc:
        session.rollback()
        session.close()
        record_refusal(request, exc)
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def unit_of_work(request: Request) -> Iterator[Session]:
    with _unit(request) as session:
        yield session


def run_unit_of_work(request: Request, work: Callable[[Session], T]) -> T:
    """The unit of work of :func:`unit_of_work`, for a hot route that does all its blocking work
    in one threadpool call (each dependency hop costs about as much as the work itself)."""
    with _unit(request) as session:
        return work(session)


UnitOfWork = Annotated[Session, Depends(unit_of_work, scope="function")]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise missing_token()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "Use the Bearer scheme with an access token.", error="invalid_request"
        )
    return token.strip()


def require(*scopes: str, write: bool = False) -> Callable[..., Awaitable[RequestContext]]:
    """A dependency that authenticates the caller and checks it holds *all* of ``scopes``.

    ``write=True`` also counts the request against the client's write rate limit.
    """
    required = frozenset(scopes)

    async def dependency(request: Request) -> RequestContext:
        st = state(request)
        token = _bearer(request)
        # The hot path touches neither the database nor a thread: verified claims are cached
        # and revocations are followed in memory (see identity.auth_state).
        claims = st.verifier.cached(token)
        if claims is None:
            claims = await run_in_threadpool(st.verifier.claims, token)
        client_id = claims.get("client_id")
        if isinstance(client_id, str) and not st.auth.knows(client_id):
            await run_in_threadpool(st.auth.lookup_client, client_id)
        principal = st.auth.principal(claims)
        request.state.principal = principal
        try:
            require_scopes(principal, required)
        except DomainError as exc:
            await run_in_threadpool(record_refusal, request, exc)
            raise
        if write:
            st.limiter.hit(st.limiter.write_limit, "write", principal.client_id)
        return RequestContext(request.state.request_id, st.clock(), principal)

    # Read by api.openapi: the operation's security requirement and its error responses.
    dependency.required_scopes = required  # type: ignore[attr-defined]
    dependency.counts_writes = write  # type: ignore[attr-defined]
    return dependency


def require_any(*scopes: str) -> Callable[..., Awaitable[RequestContext]]:
    """Like :func:`require` (a read), but the token must carry *at least one* of ``scopes``:
    for resources that callers of different roles read, each under its own scope."""
    authenticated = require()
    wanted = frozenset(scopes)

    async def dependency(request: Request) -> RequestContext:
        ctx = await authenticated(request)
        assert ctx.principal is not None
        if wanted.isdisjoint(ctx.principal.scopes):
            exc = InsufficientScope(wanted)
            await run_in_threadpool(record_refusal, request, exc)
            raise exc
        return ctx

    dependency.required_scopes = frozenset()  # type: ignore[attr-defined]
    dependency.any_of_scopes = wanted  # type: ignore[attr-defined]
    dependency.counts_writes = False  # type: ignore[attr-defined]
    return dependency


def require_or_public(*scopes: str) -> Callable[..., Awaitable[RequestContext]]:
    """Like :func:`require` (a read, never a write), but a request without an
    ``Authorization`` header is served as the public (:data:`policy.model.PUBLIC_PRINCIPAL`),
    counted against the per-address public read limit. A token that is sent must be valid: an
    invalid, expired or revoked one is refused (401), never downgraded to the public."""
    authenticated = require(*scopes)

    async def dependency(request: Request) -> RequestContext:
        if "authorization" in request.headers:
            return await authenticated(request)
        st = state(request)
        st.limiter.hit(st.limiter.public_read_limit, "public-read", source_address(request))
        request.state.principal = PUBLIC_PRINCIPAL
        return RequestContext(request.state.request_id, st.clock(), PUBLIC_PRINCIPAL)

    # Read by api.openapi: the operation is optionally authenticated with these scopes.
    dependency.required_scopes = frozenset(scopes)  # type: ignore[attr-defined]
    dependency.counts_writes = False  # type: ignore[attr-defined]
    dependency.optional_auth = True  # type: ignore[attr-defined]
    return dependency


def anonymous_context(request: Request) -> RequestContext:
    return RequestContext(request.state.request_id, state(request).clock(), None)


def policy(request: Request, session: UnitOfWork) -> PolicySet:
    return state(request).policies.get(session)


Policy = Annotated[PolicySet, Depends(policy)]
