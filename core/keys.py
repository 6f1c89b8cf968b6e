"""The master key and everything derived from it.

One 256-bit master key is the root of every secret the service holds. Purpose-specific keys are
derived from it with HKDF-SHA256 (RFC 5869) so that a key used for one purpose can never be
confused with another: the key-encryption key that wraps record data keys, the key that encrypts
OAuth signing keys at rest, the linkage-token key, and the audit log's Ed25519 signing key.

In development a key file is generated under ``./var/`` (mode 0600) on first start. In production
the service refuses to start without ``BACKBONE_MASTER_KEY`` or ``BACKBONE_MASTER_KEY_FILE``.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import Settings

KEY_BYTES = 32
NONCE_BYTES = 12


class MasterKeyError(RuntimeError):
    """The master key is missing or malformed; the service must not start."""


def _b64decode(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_key(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class MasterKey:
    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_BYTES:
            raise MasterKeyError("the master key must be exactly 32 bytes")

    def __repr__(self) -> str:  # never print key material
        return "MasterKey(<redacted>)"

    def derive(self, purpose: str, length: int = KEY_BYTES) -> bytes:
        """Derive an independent key for ``purpose`` (a stable label such as ``kek/v1``)."""
        return HKDF(
            algorithm=hashes.SHA256(),
            length=length,
            salt=b"backbone/master-key/v1",
            info=f"backbone/{purpose}".encode(),
        ).derive(self.raw)

    def fingerprint(self) -> str:
        """A short, non-secret identifier of this key, for logs and key ids."""
        return self.derive("fingerprint", 8).hex()

    def audit_signing_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.derive("audit-signing/v1"))


def load_master_key(settings: Settings) -> MasterKey:
    """Load the master key from the environment or key file, generating one in development."""
    if settings.master_key is not None:
        return MasterKey(_b64decode(settings.master_key.get_secret_value()))
    path = settings.master_key_file
    if path is None:
        raise MasterKeyError(
            "BACKBONE_ENV=production requires BACKBONE_MASTER_KEY or BACKBONE_MASTER_KEY_FILE"
        )
    if path.exists():
        return MasterKey(_b64decode(path.read_text()))
    if settings.is_production:
        raise MasterKeyError("the master key file given in BACKBONE_MASTER_KEY_FILE does not exist")
    return MasterKey(_generate_key_file(path))


def _generate_key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = os.urandom(KEY_BYTES)
    # O_EXCL: two processes starting at once must not each write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _b64decode(path.read_text())
    with os.fdopen(fd, "w") as fh:
        fh.write(encode_key(raw) + "\n")
    return raw


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """AES-256-GCM encrypt; returns ``nonce || ciphertext+tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def unseal(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Inverse of :func:`seal`; raises ``cryptography.exceptions.InvalidTag`` on tampering."""
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data)
