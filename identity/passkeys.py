"""Passkeys: WebAuthn credentials a person adds and then signs in with instead of a TOTP code.

The ceremonies are py_webauthn's (``webauthn``, Duo Labs): options are generated and responses
verified there, against the relying party this service is. Its id is the issuer's host and the
only origin accepted is the issuer's origin, so a passkey made for one deployment is worth nothing
to a page of another.

Every challenge is kept on the server (:class:`~identity.models.PasskeyChallenge`), bound to what
asked for it: a signed-in session adding a passkey, or a pending sign-in (:mod:`identity.pending`)
using one. It is taken (deleted) by the first answer, right or wrong, and expires after
:data:`CHALLENGE_SECONDS`.

A person's WebAuthn user handle is 32 random bytes, the same on each of their passkeys and never
their Backbone id.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import InvalidInput, NotFound
from core.ids import new_id
from identity.errors import SignInFailed
from identity.models import Passkey, PasskeyChallenge, Person

CHALLENGE_SECONDS = 180
MAX_NAME = 100
MAX_RESPONSE = 64 * 1024
REGISTER = "register"
SIGN_IN = "sign_in"
_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)


@dataclass(frozen=True)
class RelyingParty:
    """This service as a WebAuthn relying party: its id (a host) and the origin pages run on."""

    id: str
    name: str
    origin: str


def relying_party(issuer: str, name: str) -> RelyingParty:
    """The relying party of the service whose issuer URL is ``issuer``: the issuer's host as its
    id, the issuer's scheme, host and port as its origin."""
    parts = urlsplit(issuer)
    if not parts.hostname:
        raise ValueError("the issuer has no host")
    return RelyingParty(
        id=parts.hostname, name=name, origin=f"{parts.scheme}://{parts.netloc}".lower()
    )


def _binding(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def list_passkeys(session: Session, person_id: str) -> Sequence[Passkey]:
    """A person's passkeys, oldest first."""
    return session.scalars(
        select(Passkey).where(Passkey.person_id == person_id).order_by(Passkey.created_at)
    ).all()


def has_passkeys(session: Session, person_id: str) -> bool:
    """Whether the person has at least one passkey."""
    return (
        session.scalar(select(Passkey.id).where(Passkey.person_id == person_id).limit(1))
        is not None
    )


def _descriptors(passkeys: Sequence[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=p.credential_id,
            transports=[AuthenticatorTransport(t) for t in p.transports if t in _TRANSPORTS],
        )
        for p in passkeys
    ]


def _keep_challenge(
    session: Session,
    now: datetime,
    *,
    binding: str,
    purpose: str,
    person_id: str,
    challenge: bytes,
    user_handle: bytes | None = None,
) -> None:
    # One outstanding challenge per binding and purpose: asking again replaces it.
    session.execute(
        delete(PasskeyChallenge).where(
            PasskeyChallenge.binding == _binding(binding), PasskeyChallenge.purpose == purpose
        )
    )
    session.execute(delete(PasskeyChallenge).where(PasskeyChallenge.expires_at <= now))
    session.add(
        PasskeyChallenge(
            binding=_binding(binding),
            purpose=purpose,
            person_id=person_id,
            challenge=challenge,
            user_handle=user_handle,
            expires_at=now + timedelta(seconds=CHALLENGE_SECONDS),
        )
    )
    session.flush()


def _take_challenge(
    session: Session, now: datetime, *, binding: str, purpose: str, person_id: str
) -> PasskeyChallenge | None:
    """The challenge waiting for this answer, deleted now whatever the answer turns out to be;
    None if there is none, or it has expired, or it was another person's."""
    row = session.get(PasskeyChallenge, (_binding(binding), purpose))
    if row is None:
        return None
    session.delete(row)
    session.flush()
    if row.person_id != person_id or now >= row.expires_at:
        return None
    return row


def _credential(response: str | dict[str, Any]) -> dict[str, Any]:
    """The browser's ``PublicKeyCredential`` as JSON, as a dict (bounded in size)."""
    if isinstance(response, str):
        if len(response) > MAX_RESPONSE:
            raise InvalidInput("The passkey's response is too large.")
        try:
            parsed = json.loads(response)
        except ValueError:
            raise InvalidInput("The passkey's response is not JSON.") from None
    else:
        parsed = response
    if not isinstance(parsed, dict):
        raise InvalidInput("The passkey's response is not a JSON object.")
    return parsed


def registration_options(
    session: Session, ctx: RequestContext, rp: RelyingParty, person: Person, binding: str
) -> str:
    """The options (JSON, for ``navigator.credentials.create``) for ``person`` to add a passkey;
    the challenge is kept for ``binding`` (their session). Existing passkeys are excluded, so an
    authenticator is not registered twice. Flushes."""
    existing = list_passkeys(session, person.id)
    handle = existing[0].user_handle if existing else secrets.token_bytes(32)
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_name=person.username,
        user_id=handle,
        user_display_name=person.name,
        timeout=CHALLENGE_SECONDS * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(existing),
    )
    _keep_challenge(
        session,
        ctx.now,
        binding=binding,
        purpose=REGISTER,
        person_id=person.id,
        challenge=options.challenge,
        user_handle=handle,
    )
    return options_to_json(options)


def add_passkey(
    session: Session,
    ctx: RequestContext,
    rp: RelyingParty,
    person: Person,
    binding: str,
    response: str | dict[str, Any],
    name: str,
) -> Passkey:
    """Verify the authenticator's answer to the challenge kept for ``binding`` and keep the new
    passkey under ``name``. Raises :class:`~core.errors.InvalidInput` if there is no live
    challenge or the answer does not verify (another origin or relying party, another challenge).
    Flushes; audited as ``person.passkey.add``."""
    name = " ".join(name.split())[:MAX_NAME]
    if not name:
        raise InvalidInput("Give the passkey a name, such as the device it is on.")
    credential = _credential(response)
    challenge = _take_challenge(
        session, ctx.now, binding=binding, purpose=REGISTER, person_id=person.id
    )
    if challenge is None or challenge.user_handle is None:
        raise InvalidInput("The passkey's challenge has expired or was used; try again.")
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge.challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError):
        raise InvalidInput("The passkey could not be verified; try again.") from None
    taken = session.scalar(
        select(Passkey.id).where(Passkey.credential_id == verified.credential_id)
    )
    if taken is not None:
        raise InvalidInput("This passkey is already registered.")
    raw = credential.get("response")
    raw_transports = raw.get("transports") if isinstance(raw, dict) else None
    transports = sorted(
        {t for t in raw_transports if isinstance(t, str) and t in _TRANSPORTS}
        if isinstance(raw_transports, list)
        else set()
    )
    passkey = Passkey(
        id=new_id("pky"),
        person_id=person.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=transports,
        aaguid=verified.aaguid,
        user_handle=challenge.user_handle,
        name=name,
        created_at=ctx.now,
        last_used_at=None,
    )
    session.add(passkey)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.PERSON_PASSKEY_ADD, resource_type="passkey", resource_id=passkey.id
        ),
    )
    return passkey


def remove_passkey(session: Session, ctx: RequestContext, person_id: str, passkey_id: str) -> None:
    """Remove one of ``person_id``'s passkeys; another person's is not found. Flushes; audited
    as ``person.passkey.remove``."""
    passkey = session.scalar(
        select(Passkey).where(Passkey.id == passkey_id[:40], Passkey.person_id == person_id)
    )
    if passkey is None:
        raise NotFound("You have no passkey with this id.")
    session.delete(passkey)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.PERSON_PASSKEY_REMOVE,
            resource_type="passkey",
            resource_id=passkey_id,
        ),
    )


def sign_in_options(
    session: Session, ctx: RequestContext, rp: RelyingParty, person: Person, binding: str
) -> str:
    """The options (JSON, for ``navigator.credentials.get``) for ``person`` to sign in with one
    of their passkeys; the challenge is kept for ``binding`` (their pending sign-in). Flushes."""
    options = generate_authentication_options(
        rp_id=rp.id,
        timeout=CHALLENGE_SECONDS * 1000,
        allow_credentials=_descriptors(list_passkeys(session, person.id)),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    _keep_challenge(
        session,
        ctx.now,
        binding=binding,
        purpose=SIGN_IN,
        person_id=person.id,
        challenge=options.challenge,
    )
    return options_to_json(options)


def check_passkey(
    session: Session,
    ctx: RequestContext,
    rp: RelyingParty,
    person: Person,
    binding: str,
    response: str | dict[str, Any],
) -> Passkey:
    """Accept ``person``'s passkey as their second factor: the answer must be to the challenge
    kept for ``binding``, from this origin and relying party, signed by one of *their* passkeys,
    with a signature counter that moved on (a counter that goes back betrays a cloned
    authenticator; authenticators that keep none always say 0). Raises
    :class:`~identity.errors.SignInFailed` otherwise. Flushes."""
    try:
        credential = _credential(response)
    except InvalidInput:
        raise SignInFailed() from None
    challenge = _take_challenge(
        session, ctx.now, binding=binding, purpose=SIGN_IN, person_id=person.id
    )
    raw_id = credential.get("rawId") or credential.get("id")
    if challenge is None or not isinstance(raw_id, str) or len(raw_id) > 1400:
        raise SignInFailed()
    try:
        credential_id = base64url_to_bytes(raw_id)
    except ValueError:
        raise SignInFailed() from None
    passkey = session.scalar(
        select(Passkey).where(
            Passkey.credential_id == credential_id, Passkey.person_id == person.id
        )
    )
    if passkey is None:
        raise SignInFailed()
    response_part = credential.get("response")
    handle = response_part.get("userHandle") if isinstance(response_part, dict) else None
    if handle and handle != bytes_to_base64url(passkey.user_handle):
        raise SignInFailed()
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge.challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError):
        raise SignInFailed() from None
    passkey.sign_count = verified.new_sign_count
    passkey.last_used_at = ctx.now
    session.flush()
    return passkey
