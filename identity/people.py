"""People: users of an organization who sign in to the console, and their sessions.

A person has a role of :data:`identity.scopes.ROLES` and holds exactly that role's scopes: the
console builds them the same :class:`~policy.model.Principal` a client of their organization
with that role would have (``client_id`` is ``person:<id>``), so the policy engine decides for a
person exactly as for a client, and every audit event of theirs names them.

Local accounts only: a password (argon2id) and a second factor by TOTP (RFC 6238, six digits,
30 seconds), whose secret is sealed at rest under the master key's ``totp/v1`` purpose key and
shown once, at enrolment, or by a passkey the person adds (:mod:`identity.passkeys`).

Sessions are kept on the server: the browser holds a random 256-bit token, the table its SHA-256.
A session ends after ``idle`` without use, after ``absolute`` in any case, or at sign-out.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import Conflict, InvalidInput, NotFound
from core.ids import new_id
from core.keys import MasterKey, seal, unseal
from identity.errors import SignInFailed
from identity.models import Organization, Person, PersonSession
from identity.scopes import ROLES
from policy.model import Principal

PERSON_PREFIX = "person:"
TOTP_PURPOSE = "totp/v1"
TOTP_STEP_SECONDS = 30
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_CODE = re.compile(r"^[0-9]{6}$")
# argon2-cffi's defaults are RFC 9106's second recommendation for argon2id (64 MiB, t=3, p=4).
_HASHER = PasswordHasher()
# Checked when the username is unknown, so that a wrong username costs what a wrong password does.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class EnrolledPerson:
    """A person just created, with what is shown to them once and never again."""

    person: Person
    password: str
    totp_secret: str
    provisioning_uri: str


@dataclass(frozen=True)
class StartedSession:
    """A new session: ``token`` goes to the browser's cookie (only its hash is stored)."""

    token: str
    row: PersonSession


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` in PHC string form (``$argon2id$v=19$...``)."""
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the stored argon2id hash (constant time in the password)."""
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A password of 128 random bits, in 22 URL-safe characters."""
    return secrets.token_urlsafe(16)


def _totp_key(master: MasterKey) -> bytes:
    return master.derive(TOTP_PURPOSE)


def totp_secret_of(master: MasterKey, person: Person) -> str:
    """The person's TOTP secret (base32), unsealed; for checking codes, never for display."""
    assert person.totp_sealed is not None
    return unseal(_totp_key(master), person.totp_sealed, person.id.encode()).decode()


def principal_of(person: Person) -> Principal:
    """The principal a person acts as: their organization, and their role's scopes."""
    _, scopes = ROLES[person.role]
    return Principal(
        client_id=PERSON_PREFIX + person.id,
        organization_id=person.organization_id,
        organization_kind=person.organization.kind,
        scopes=scopes,
    )


def check_new_person(
    session: Session, *, organization_id: str, username: str, role: str
) -> Organization:
    """The organization of a person about to be created, once the role fits its kind and the
    username is well-formed and free."""
    org = session.get(Organization, organization_id)
    if org is None:
        raise NotFound("No such organization.")
    if role not in ROLES:
        raise InvalidInput(f"Role must be one of {', '.join(sorted(ROLES))}.")
    kind, _ = ROLES[role]
    if kind not in ("*", org.kind):
        raise InvalidInput(f"Role {role} is for organizations of kind {kind}.")
    if not _USERNAME.match(username):
        raise InvalidInput("A username is 2-64 lower-case letters, digits, '.', '_' or '-'.")
    if session.scalar(select(Person.id).where(Person.username == username)) is not None:
        raise Conflict("A person with this username already exists.")
    return org


def create_person(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    *,
    organization_id: str,
    username: str,
    role: str,
    name: str | None = None,
    password: str | None = None,
    issuer: str = "Backbone",
) -> EnrolledPerson:
    """Create a person of ``organization_id`` with ``role``; the password (generated unless
    given) and the TOTP secret are returned once. Flushes; audited as ``person.create``."""
    org = check_new_person(session, organization_id=organization_id, username=username, role=role)
    if password is None:
        password = generate_password()
    elif not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"A password is {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long."
        )
    person_id = new_id("psn")
    secret = pyotp.random_base32()
    person = Person(
        id=person_id,
        organization_id=org.id,
        username=username,
        name=name or username,
        role=role,
        password_hash=hash_password(password),
        totp_sealed=seal(_totp_key(master), secret.encode(), person_id.encode()),
        created_at=ctx.now,
    )
    session.add(person)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.PERSON_CREATE, resource_type="person", resource_id=person_id
        ),
    )
    uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)
    return EnrolledPerson(person, password, secret, uri)


def list_people(session: Session, organization_id: str | None = None) -> Sequence[Person]:
    """The people of every organization (or of ``organization_id``), by username; no secret is
    read (the password hash and the sealed TOTP secret stay in their columns)."""
    query = select(Person).order_by(Person.username)
    if organization_id is not None:
        query = query.where(Person.organization_id == organization_id)
    return session.scalars(query).all()


def disable_person(session: Session, ctx: RequestContext, username: str) -> Person:
    """Disable a person: they can no longer sign in, and their sessions end at once. Flushes;
    audited as ``person.disable``."""
    person = session.scalar(select(Person).where(Person.username == username))
    if person is None:
        raise NotFound("No person has this username.")
    if person.disabled_at is None:
        person.disabled_at = ctx.now
    session.execute(delete(PersonSession).where(PersonSession.person_id == person.id))
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.PERSON_DISABLE, resource_type="person", resource_id=person.id
        ),
    )
    return person


def totp_code(secret: str, at: datetime) -> str:
    """The TOTP code of ``secret`` at ``at`` (what an authenticator app shows)."""
    return pyotp.TOTP(secret).generate_otp(int(at.timestamp()) // TOTP_STEP_SECONDS)


def _accepted_step(secret: str, code: str, now: datetime, last: int | None) -> int | None:
    """The time step ``code`` belongs to (one step of clock drift either way), unless it was
    already used: a code signs in once."""
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // TOTP_STEP_SECONDS
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and (last is None or step > last):
            return step
    return None


def check_password(session: Session, username: str, password: str) -> Person:
    """The enabled person whose username and password these are (the first of the two factors);
    raises :class:`~identity.errors.SignInFailed`, saying nothing of which was wrong, otherwise.
    A wrong username costs what a wrong password does."""
    person = session.scalar(select(Person).where(Person.username == username[:64]))
    if person is None or person.password_hash is None:
        # Nobody, or a person who signs in through their organization's identity provider.
        verify_password(password, _DUMMY_HASH)
        raise SignInFailed()
    if not verify_password(password, person.password_hash) or person.disabled_at is not None:
        raise SignInFailed()
    if _HASHER.check_needs_rehash(person.password_hash):
        person.password_hash = hash_password(password)
    return person


def check_totp(
    session: Session, ctx: RequestContext, master: MasterKey, person: Person, code: str
) -> None:
    """Accept ``person``'s current TOTP code (once: the step is remembered) or raise
    :class:`~identity.errors.SignInFailed`. Flushes."""
    code = code.strip().replace(" ", "")
    step = (
        _accepted_step(totp_secret_of(master, person), code, ctx.now, person.totp_last_step)
        if _CODE.match(code)
        else None
    )
    if step is None:
        raise SignInFailed()
    person.totp_last_step = step
    session.flush()


def authenticate(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    username: str,
    password: str,
    code: str,
) -> Person:
    """The person whose username, password and current TOTP code these are; raises
    :class:`~identity.errors.SignInFailed`, saying nothing of which was wrong, otherwise."""
    person = check_password(session, username, password)
    check_totp(session, ctx, master, person, code)
    return person


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    session: Session, ctx: RequestContext, person: Person, *, idle: timedelta, absolute: timedelta
) -> StartedSession:
    """Open a session for ``person`` (just authenticated). Flushes; audited as
    ``person.sign_in``, naming the person."""
    # Sessions that have ended stay until someone signs in: then they go, whoever's they were.
    purge_sessions(session, ctx.now)
    token = secrets.token_urlsafe(32)
    row = PersonSession(
        id=_digest(token),
        person_id=person.id,
        created_at=ctx.now,
        last_seen_at=ctx.now,
        idle_expires_at=min(ctx.now + idle, ctx.now + absolute),
        expires_at=ctx.now + absolute,
        csrf_secret=secrets.token_urlsafe(32),
    )
    session.add(row)
    session.flush()
    as_person = RequestContext(ctx.request_id, ctx.now, principal_of(person))
    record(
        session,
        as_person,
        AuditRecord(
            action=AuditAction.PERSON_SIGN_IN, resource_type="person", resource_id=person.id
        ),
    )
    return StartedSession(token, row)


def resume_session(
    session: Session, now: datetime, token: str
) -> tuple[Person, PersonSession] | None:
    """The person and session of a live session token; None if the token names no session, or
    one that has expired (idle or absolute) or whose person is disabled. Reads only: the caller
    moves the idle expiry on with :func:`touch_session` once the request is admitted."""
    if not token or len(token) > 128:
        return None
    row = session.get(PersonSession, _digest(token))
    if row is None:
        return None
    if now >= row.idle_expires_at or now >= row.expires_at:
        return None
    person = session.get(Person, row.person_id)
    if person is None or person.disabled_at is not None:
        return None
    return person, row


def touch_session(session: Session, row: PersonSession, now: datetime, idle: timedelta) -> None:
    """The session was used at ``now``: its idle expiry moves on (never past its absolute one)."""
    row.last_seen_at = now
    row.idle_expires_at = min(now + idle, row.expires_at)
    session.flush()


def end_session(session: Session, ctx: RequestContext, session_id: str) -> None:
    """Sign out: delete the session ``session_id`` (the stored hash, not the token). Flushes;
    audited as ``person.sign_out``."""
    row = session.get(PersonSession, session_id)
    if row is None:
        return
    person_id = row.person_id
    session.delete(row)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.PERSON_SIGN_OUT, resource_type="person", resource_id=person_id
        ),
    )


def csrf_matches(expected: str, token: str) -> bool:
    """Whether a form's token is the session's synchronizer token (constant time)."""
    return hmac.compare_digest(expected.encode(), token.encode())


def purge_sessions(session: Session, now: datetime) -> int:
    """Delete the sessions that have ended (idle or absolute expiry); the number deleted."""
    result = session.execute(
        delete(PersonSession).where(
            or_(PersonSession.expires_at <= now, PersonSession.idle_expires_at <= now)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
