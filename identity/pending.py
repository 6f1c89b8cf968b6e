"""Pending sign-ins: a person whose password was right, before their second factor.

The state is kept on the server like a session's: the browser holds a random 256-bit token in a
short-lived cookie, the table its SHA-256, the person and an expiry of :data:`PENDING_SECONDS`.
A pending sign-in opens nothing but the second factor's page; it ends when a session starts
(:func:`finish`), when it expires, or when the same browser signs in again.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.context import RequestContext
from identity.models import PendingSignIn, Person

PENDING_SECONDS = 300


@dataclass(frozen=True)
class Pending:
    """A pending sign-in: ``token`` goes to the browser's cookie (only its hash is stored)."""

    token: str
    row: PendingSignIn


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def begin(session: Session, ctx: RequestContext, person: Person) -> Pending:
    """The password of ``person`` was right: their sign-in waits for the second factor.
    Flushes."""
    session.execute(delete(PendingSignIn).where(PendingSignIn.expires_at <= ctx.now))
    token = secrets.token_urlsafe(32)
    row = PendingSignIn(
        id=_digest(token),
        person_id=person.id,
        created_at=ctx.now,
        expires_at=ctx.now + timedelta(seconds=PENDING_SECONDS),
    )
    session.add(row)
    session.flush()
    return Pending(token, row)


def resume(session: Session, now: datetime, token: str) -> tuple[Person, PendingSignIn] | None:
    """The person and pending sign-in of a live token; None if it names none, or one that has
    expired, or whose person has been disabled since."""
    if not token or len(token) > 128:
        return None
    row = session.get(PendingSignIn, _digest(token))
    if row is None or now >= row.expires_at:
        return None
    person = session.get(Person, row.person_id)
    if person is None or person.disabled_at is not None:
        return None
    return person, row


def binding(row: PendingSignIn) -> str:
    """What a passkey challenge of this pending sign-in is bound to."""
    return "pending:" + row.id


def finish(session: Session, row: PendingSignIn) -> None:
    """The second factor passed (or the sign-in is abandoned): the pending sign-in is over.
    Flushes."""
    session.delete(row)
    session.flush()
