"""Everything a request handler needs from the running service, built once at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from aggregation.reads import ReleaseViews
from agreements.service import PolicyCache
from api.metrics import job_recorder
from api.ratelimit import RateLimiter
from api.rendering import RenderedPages
from audit.batcher import AuditBatcher
from core.keys import MasterKey
from core.settings import Settings
from identity.auth_state import AuthState
from identity.oauth_server import ServerConfig
from identity.signing_keys import published_jwks
from identity.tokens import TokenVerifier, VerificationKeys
from jobs.engine import JobEngine
from jobs.service import JobRuntime


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    master: MasterKey
    oauth: ServerConfig
    keys: VerificationKeys
    verifier: TokenVerifier
    auth: AuthState
    policies: PolicyCache
    limiter: RateLimiter
    audit_batcher: AuditBatcher
    clock: Callable[[], datetime]
    release_views: ReleaseViews
    rendered: RenderedPages
    jobs: JobEngine

    @classmethod
    def build(
        cls,
        settings: Settings,
        engine: Engine,
        sessions: sessionmaker[Session],
        master: MasterKey,
        clock: Callable[[], datetime],
    ) -> AppState:
        def load_jwks() -> dict[str, object]:
            with sessions() as session:
                return published_jwks(session, clock())

        keys = VerificationKeys(load_jwks)
        oauth = ServerConfig(
            issuer=settings.issuer,
            audience=settings.audience,
            token_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
            assertion_max_lifetime=timedelta(
                seconds=settings.client_assertion_max_lifetime_seconds
            ),
        )
        policies = PolicyCache(sessions)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            master=master,
            oauth=oauth,
            keys=keys,
            verifier=TokenVerifier(settings.issuer, settings.audience, keys),
            auth=AuthState(sessions, clock),
            policies=policies,
            audit_batcher=AuditBatcher(sessions, engine, settings.audit_read_group_commit),
            limiter=RateLimiter(
                settings.rate_limit_storage,
                settings.token_rate_limit,
                settings.write_rate_limit,
                settings.token_failure_rate_limit,
                settings.public_read_rate_limit,
            ),
            clock=clock,
            release_views=ReleaseViews(),
            rendered=RenderedPages(),
            jobs=JobEngine(
                settings,
                JobRuntime(sessions, master, policies, clock, finished=job_recorder(sessions)),
            ),
        )
