"""The in-memory authorization state every API worker checks tokens against.

Checking a token must not cost a database round trip on every request (a thread hop and a query
cost several times more than the protected route itself), yet revocation and client disablement
must take effect at once. Each worker therefore holds the set of revoked token ids and the status
of every client, loaded at start and kept current from the ``auth_changes`` feed:

* in the worker that commits a change, before its response is sent (immediately);
* in every other worker, by a background thread that follows the feed every
  ``BACKBONE_AUTH_SYNC_SECONDS`` (0.1 s by default; one indexed query per interval).

A client the view does not know yet (created by another worker a moment ago) is looked up in the
database on first sight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.periodic import Periodic
from identity.errors import AuthenticationFailed
from identity.models import AuthChange, Client, Organization, RevokedToken
from policy.model import Principal


@dataclass(frozen=True, slots=True)
class ClientState:
    organization_id: str
    organization_kind: str
    disabled: bool


class AuthState:
    def __init__(self, sessions: Callable[[], Session], clock: Callable[[], datetime]) -> None:
        self._sessions = sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, ClientState] = {}
        self._revoked: dict[str, datetime] = {}
        self._last_change = -1
        self._follower = Periodic(
            "auth-state-follower", self.sync, "could not follow the authorization change feed"
        )

    # -- loading and following the feed ------------------------------------------------------

    def load(self) -> None:
        """Load everything (at start, or to resynchronize)."""
        with self._sessions() as session:
            last = int(session.scalar(select(func.coalesce(func.max(AuthChange.id), 0))) or 0)
            clients = {
                cid: ClientState(org, kind, disabled is not None)
                for cid, org, kind, disabled in session.execute(
                    select(
                        Client.id, Client.organization_id, Organization.kind, Client.disabled_at
                    ).join(Organization, Organization.id == Client.organization_id)
                )
            }
            rows = session.execute(
                select(RevokedToken.jti, RevokedToken.expires_at).where(
                    RevokedToken.expires_at > self._clock()
                )
            ).all()
            revoked = {jti: expires for jti, expires in rows}
        with self._lock:
            self._clients = clients
            self._revoked = revoked
            self._last_change = last

    def sync(self) -> None:
        """Apply the changes committed since the last sync (cheap when there are none)."""
        with self._sessions() as session:
            changes = session.execute(
                select(AuthChange.id, AuthChange.kind, AuthChange.subject, AuthChange.expires_at)
                .where(AuthChange.id > self._last_change)
                .order_by(AuthChange.id)
            ).all()
        if not changes:
            return
        with self._lock:
            for change_id, kind, subject, expires in changes:
                if kind == "revoke":
                    self._revoked[subject] = expires or datetime.max.replace(tzinfo=UTC)
                elif kind == "disable":
                    current = self._clients.get(subject)
                    if current is not None:
                        self._clients[subject] = ClientState(
                            current.organization_id, current.organization_kind, True
                        )
                    else:
                        self._clients.pop(subject, None)  # looked up afresh on first sight
                self._last_change = max(self._last_change, change_id)
            now = self._clock()
            if len(self._revoked) > 1000:
                self._revoked = {j: e for j, e in self._revoked.items() if e > now}

    def lookup_client(self, client_id: str) -> None:
        """Fetch one client the view does not know yet."""
        with self._sessions() as session:
            row = session.execute(
                select(Client.organization_id, Organization.kind, Client.disabled_at)
                .join(Organization, Organization.id == Client.organization_id)
                .where(Client.id == client_id)
            ).first()
        if row is not None:
            with self._lock:
                self._clients[client_id] = ClientState(row[0], row[1], row[2] is not None)

    def start(self, interval: float) -> None:
        """Follow the change feed every ``interval`` seconds."""
        self._follower.start(interval)

    def stop(self) -> None:
        self._follower.stop()

    # -- checking -----------------------------------------------------------------------------

    def knows(self, client_id: str) -> bool:
        return client_id in self._clients

    def principal(self, claims: dict[str, object]) -> Principal:
        """The principal of verified ``claims``, or :class:`AuthenticationFailed` if the token is
        revoked or its client disabled or unknown."""
        client_id, jti = claims.get("client_id"), claims.get("jti")
        if not isinstance(client_id, str) or not isinstance(jti, str):
            raise AuthenticationFailed("The access token is invalid or has expired.")
        client = self._clients.get(client_id)
        if client is None or client.disabled:
            raise AuthenticationFailed("The client of this access token is disabled.")
        if jti in self._revoked:
            raise AuthenticationFailed("The access token has been revoked.")
        return Principal(
            client_id=client_id,
            organization_id=client.organization_id,
            organization_kind=client.organization_kind,
            scopes=frozenset(str(claims.get("scope") or "").split()),
            token_id=jti,
        )


def record_change(
    session: Session, kind: str, subject: str, at: datetime, expires_at: datetime | None = None
) -> None:
    """Add a change to the feed, in the same transaction as the change itself."""
    session.add(AuthChange(kind=kind, subject=subject, at=at, expires_at=expires_at))
    session.info["auth_changed"] = True
