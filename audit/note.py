"""Signed checkpoints in the C2SP ``tlog-checkpoint`` / ``signed-note`` format (transparency-dev).

A checkpoint is a note whose text is::

    <origin>\\n
    <tree size, decimal>\\n
    <root hash, standard base64>\\n
    time <RFC 3339 UTC time the checkpoint was made>\\n

followed by a blank line and one signature line ``— <key name> <base64(key id || signature)>``,
where the Ed25519 signature covers the text including its final newline and the key id is the
first four bytes of ``SHA-256(key name || 0x0A || 0x01 || public key)``. The key name is the
origin. Tools that speak the format (Go's ``sumdb/note``, transparency-dev witnesses) can read
and co-sign these checkpoints; the ``time`` extension line is opaque to them.

A verifier key is distributed as a C2SP vkey (``<name>+<hex key id>+<base64(0x01 || key)>``) or
as a PEM public key. This module is pure (no database), so ``backbone audit verify`` can use it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.canonical import b64, unb64

if TYPE_CHECKING:
    from core.keys import MasterKey

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_NOTE_BYTES = 1 << 20


class NoteError(ValueError):
    """A checkpoint or key that is malformed, or whose signature does not verify."""


def key_id(name: str, public: bytes) -> bytes:
    """The C2SP key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public).digest()[:4]


def valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def origin_for(issuer: str) -> str:
    """The log's origin (and key name), derived from the service's issuer URL."""
    parts = urlsplit(issuer)
    base = (parts.netloc + parts.path.rstrip("/")) or "backbone"
    return f"{base}/audit"


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 public key, with the key name it signs under when known (vkey form)."""

    public: bytes
    name: str | None = None

    def __post_init__(self) -> None:
        if len(self.public) != 32:
            raise NoteError("an Ed25519 public key is 32 bytes")
        if self.name is not None and not valid_name(self.name):
            raise NoteError("a key name is non-empty and has no spaces or '+'")

    def vkey(self) -> str:
        if self.name is None:
            raise NoteError("a vkey needs the key name")
        return f"{self.name}+{key_id(self.name, self.public).hex()}+{b64(bytes([ED25519]) + self.public)}"

    def pem(self) -> str:
        key = Ed25519PublicKey.from_public_bytes(self.public)
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Read a vkey, a PEM public key, or the JSON document of ``GET /v1/audit/public-key``."""
        text = text.strip()
        if text.startswith("{"):
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                raise NoteError("the key file is not valid JSON") from exc
            if not isinstance(doc, dict) or not isinstance(doc.get("vkey"), str):
                raise NoteError("the key document has no vkey")
            return cls.parse(doc["vkey"])
        if text.startswith("-----BEGIN"):
            try:
                loaded = serialization.load_pem_public_key(text.encode())
            except ValueError as exc:
                raise NoteError("the PEM key cannot be read") from exc
            if not isinstance(loaded, Ed25519PublicKey):
                raise NoteError("the PEM key is not an Ed25519 key")
            return cls(
                loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            )
        parts = text.split("+", 2)  # the base64 key may itself contain '+'
        if len(parts) != 3:
            raise NoteError("the key is neither a vkey (name+id+key) nor a PEM public key")
        name, hex_id, encoded = parts
        try:
            raw = unb64(encoded, 33)
            kid = bytes.fromhex(hex_id)
        except ValueError as exc:
            raise NoteError("the vkey is malformed") from exc
        if raw[0] != ED25519:
            raise NoteError("only Ed25519 keys are supported")
        vkey = cls(raw[1:], name)
        if kid != key_id(name, vkey.public):
            raise NoteError("the vkey's key id does not match its name and key")
        return vkey


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose signature has been verified (or that this service just signed)."""

    origin: str
    size: int
    root: bytes
    time: datetime | None
    note: str


def checkpoint_text(origin: str, size: int, root: bytes, time: datetime) -> str:
    stamp = time.astimezone(UTC).isoformat(timespec="microseconds")
    return f"{origin}\n{size}\n{b64(root)}\ntime {stamp}\n"


class LogSigner:
    """Signs checkpoints with the log's Ed25519 key (derived from the master key)."""

    def __init__(self, private: Ed25519PrivateKey, origin: str) -> None:
        if not valid_name(origin):
            raise NoteError("the origin must be a valid key name")
        self._private = private
        self.origin = origin
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = VerifierKey(public, origin)
        self.key_id = key_id(origin, public)

    def sign(self, size: int, root: bytes, time: datetime) -> tuple[str, bytes]:
        """Return (the signed note, the bare Ed25519 signature)."""
        text = checkpoint_text(self.origin, size, root, time)
        signature = self._private.sign(text.encode())
        line = f"{SIGNATURE_PREFIX}{self.origin} {b64(self.key_id + signature)}\n"
        return f"{text}\n{line}", signature


@lru_cache(maxsize=8)
def signer_for(master: MasterKey, origin: str) -> LogSigner:
    """The log's signer: its key is derived from the master key and never stored."""
    return LogSigner(master.audit_signing_key(), origin)


def _parse_text(text: str) -> tuple[str, int, bytes, datetime | None]:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or any(line == "" for line in lines[:-1]):
        raise NoteError("a checkpoint has an origin, a size and a root, one per line")
    origin, size_text, root_text, *extensions = lines[:-1]
    if not size_text.isascii() or not size_text.isdigit() or size_text != str(int(size_text)):
        raise NoteError("the tree size is not a decimal number")
    try:
        root = unb64(root_text)
    except ValueError as exc:
        raise NoteError("the root hash is not 32 bytes of base64") from exc
    time: datetime | None = None
    for ext in extensions:
        if ext.startswith("time "):
            try:
                time = datetime.fromisoformat(ext[5:])
            except ValueError as exc:
                raise NoteError("the time line is not an RFC 3339 time") from exc
    return origin, int(size_text), root, time


def open_checkpoint(note: str, key: VerifierKey) -> Checkpoint:
    """Verify a signed checkpoint with ``key`` and return its contents, or raise NoteError.

    As in Go's ``note.Open``: the signature lines that name this key (by name and key id) decide;
    one that fails to verify rejects the note. A key without a name signs under the origin.
    """
    if len(note.encode()) > MAX_NOTE_BYTES or not note.endswith("\n"):
        raise NoteError("not a signed note")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("not a signed note: no signature block")
    text, signatures = note[: cut + 1], note[cut + 2 :]
    origin, size, root, time = _parse_text(text)
    name = key.name if key.name is not None else origin
    if name != origin:
        raise NoteError(f"the checkpoint is for log {origin!r}, not {name!r}")
    want = key_id(name, key.public)
    public = Ed25519PublicKey.from_public_bytes(key.public)
    verified = False
    for line in signatures.split("\n")[:-1]:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("malformed signature line")
        sig_name, _, encoded = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
        try:
            blob = unb64(encoded, None)
        except ValueError as exc:
            raise NoteError("malformed signature line") from exc
        if len(blob) < 5:
            raise NoteError("malformed signature line")
        if sig_name != name or blob[:4] != want:
            continue  # another signer (a witness, say): not ours to judge
        try:
            public.verify(blob[4:], text.encode())
        except InvalidSignature as exc:
            raise NoteError("the checkpoint signature does not verify") from exc
        verified = True
    if not verified:
        raise NoteError("the checkpoint is not signed by this key")
    return Checkpoint(origin, size, root, time, note)


def read_checkpoint(text: str, key: VerifierKey) -> Checkpoint:
    """Like :func:`open_checkpoint`, also accepting the JSON of ``/v1/audit/checkpoints/latest``."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise NoteError("the checkpoint file is not valid JSON") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("note"), str):
            raise NoteError("the checkpoint document has no note")
        text = doc["note"]
    return open_checkpoint(text, key)
