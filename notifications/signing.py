"""Webhook secrets and signatures, as the Standard Webhooks specification says.

The signature is ``v1,`` and the base64 HMAC-SHA256, under the secret, of
``"{webhook-id}.{webhook-timestamp}.{body}"``; the `standardwebhooks` package computes it (the
same code receivers use to verify), so the two cannot drift apart.
"""

from __future__ import annotations

import base64
import os
from datetime import datetime
from math import floor

from standardwebhooks.webhooks import Webhook

from core.keys import MasterKey, seal, unseal

SECRET_PREFIX = "whsec_"
_PURPOSE = "webhooks/secret/v1"


def new_secret() -> str:
    """A fresh ``whsec_`` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def seal_secret(master: MasterKey, subscription_id: str, secret: str) -> bytes:
    """The secret sealed at rest, bound to its subscription."""
    return seal(master.derive(_PURPOSE), secret.encode(), subscription_id.encode())


def open_secret(master: MasterKey, subscription_id: str, sealed: bytes) -> str:
    """The secret of :func:`seal_secret`, for signing a delivery."""
    return unseal(master.derive(_PURPOSE), sealed, subscription_id.encode()).decode()


def headers(secret: str, message_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one delivery attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }
