"""ES256 keys that sign access tokens, sealed at rest under a key derived from the master key.

Rotation makes a new key current and retires the old one, which stays in the published JWK set
until every token it signed has expired, so that resource servers never reject a live token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from joserfc.jwk import ECKey, KeySet
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.ids import new_id
from core.keys import MasterKey, seal, unseal
from identity.models import SigningKey

_PURPOSE = "oauth-signing-keys/v1"


def _ad(kid: str) -> bytes:
    return f"signing-key:{kid}".encode()


@dataclass(frozen=True)
class ActiveSigningKey:
    kid: str
    key: ECKey


def create_signing_key(session: Session, master: MasterKey, now: datetime) -> SigningKey:
    kid = new_id("key")
    key = ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"})
    private = json.dumps(key.as_dict(private=True)).encode()
    row = SigningKey(
        kid=kid,
        alg="ES256",
        public_jwk=key.as_dict(private=False),
        private_sealed=seal(master.derive(_PURPOSE), private, _ad(kid)),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def current_signing_key(session: Session) -> SigningKey | None:
    return session.scalars(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc())
        .limit(1)
    ).first()


def ensure_signing_key(session: Session, master: MasterKey, now: datetime) -> SigningKey:
    return current_signing_key(session) or create_signing_key(session, master, now)


def load_private_key(row: SigningKey, master: MasterKey) -> ActiveSigningKey:
    raw = unseal(master.derive(_PURPOSE), row.private_sealed, _ad(row.kid))
    return ActiveSigningKey(row.kid, ECKey.import_key(json.loads(raw)))


def rotate_signing_key(
    session: Session, master: MasterKey, now: datetime, token_ttl: timedelta
) -> SigningKey:
    """Retire the current key (published until its last token expires) and make a new one."""
    for row in session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        row.retired_at = now
        row.publish_until = now + token_ttl + timedelta(seconds=60)
    return create_signing_key(session, master, now)


def published_jwks(session: Session, now: datetime) -> dict[str, Any]:
    rows = session.scalars(
        select(SigningKey)
        .where(or_(SigningKey.publish_until.is_(None), SigningKey.publish_until > now))
        .order_by(SigningKey.created_at.desc())
    ).all()
    return {"keys": [row.public_jwk for row in rows]}


def public_keyset(jwks: dict[str, Any]) -> KeySet:
    return KeySet.import_key_set(cast(Any, jwks))
