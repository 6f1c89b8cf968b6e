"""The encrypted record vault: envelope encryption of columnar segments, and crypto-shredding.

Key hierarchy::

    master key --HKDF("kek/kek-v1")--> key-encryption key (KEK), never stored
      wraps   data key      random, one per (agreement, dataset)    data_keys.wrapped
        wraps   segment key random, one per submission              segments.wrapped_key
          seals   parts     Parquet (zstd) of a slice of rows      segment_parts.ciphertext

Everything is AES-256-GCM with a random 96-bit nonce (``core.keys.seal``), and every ciphertext
carries associated data naming what it belongs to:

* a data key: its id, agreement and dataset;
* a segment key: its data key, agreement, agreement version, dataset, submission, and the
  segment's part and row counts, so that dropping, adding or reordering parts is detected;
* a part: agreement, version, dataset, submission and its sequence number, so that a part
  copied under another submission, another position or another agreement fails to decrypt.

Why the middle layer: the issue asks for a data key per (agreement, dataset), and a withdrawn
submission must be destroyable on its own. Destroying a data key shreds every submission of an
agreement's dataset at once (agreement ended); deleting a segment row, the only place its wrapped
segment key lives, shreds one submission (withdrawn or replaced) without touching the others.
Rotating the master key re-wraps data keys only; segment keys and parts are never rewritten.

A segment key exists in memory only while its submission is being sealed or read. Parts are
sealed as they are produced and spilled to a scratch file, so plaintext never reaches the disk.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import polars as pl
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import Conflict
from core.ids import new_id
from core.keys import NONCE_BYTES, MasterKey, seal, unseal
from records.models import DataKey, Segment, SegmentPart

KEK_LABEL = "kek/kek-v1"
KEK_PREFIX = "kek/v1/"
LEGACY_KEK_ID = "kek-v1"
SEGMENT_FORMAT = "parquet-parts"
LEGACY_FORMAT = "arrow-ipc-zstd"


class DataDestroyed(Conflict):
    kind = "data-destroyed"
    title = "The data has been destroyed"


class WrongMasterKey(RuntimeError):
    """A data key was wrapped under a different master key than the one configured."""


class SegmentCorrupt(RuntimeError):
    """A segment's parts are missing, extra, out of order, or fail authentication."""


@dataclass(frozen=True)
class SegmentContext:
    agreement_id: str
    agreement_version: int
    dataset: str
    submission_id: str

    def associated_data(self) -> bytes:
        """Associated data of a revision-0001 segment (one ciphertext under the data key)."""
        return (
            f"backbone/segment/v1|{self.agreement_id}|{self.agreement_version}"
            f"|{self.dataset}|{self.submission_id}"
        ).encode()

    def part_ad(self, seq: int) -> bytes:
        return (
            f"backbone/segment-part/v2|{self.agreement_id}|{self.agreement_version}"
            f"|{self.dataset}|{self.submission_id}|{seq}"
        ).encode()

    def key_ad(self, data_key_id: str, part_count: int, row_count: int) -> bytes:
        return (
            f"backbone/segment-key/v2|{data_key_id}|{self.agreement_id}|{self.agreement_version}"
            f"|{self.dataset}|{self.submission_id}|{part_count}|{row_count}"
        ).encode()


# -- data keys ---------------------------------------------------------------------------------


def kek_id(master: MasterKey) -> str:
    """The id recorded with each wrapped data key: names the master key by its fingerprint."""
    return KEK_PREFIX + master.fingerprint()


def _kek(master: MasterKey, row_kek_id: str) -> bytes:
    if row_kek_id != LEGACY_KEK_ID and row_kek_id != kek_id(master):
        raise WrongMasterKey(
            "this data key is wrapped under another master key "
            f"({row_kek_id}); configure that key or re-wrap with `backbone records rewrap`"
        )
    return master.derive(KEK_LABEL)


def _key_ad(key: DataKey) -> bytes:
    return f"backbone/data-key/v1|{key.id}|{key.agreement_id}|{key.dataset}".encode()


def live_data_key(session: Session, agreement_id: str, dataset: str) -> DataKey | None:
    return session.scalars(
        select(DataKey).where(
            DataKey.agreement_id == agreement_id,
            DataKey.dataset == dataset,
            DataKey.destroyed_at.is_(None),
        )
    ).first()


def data_key_for(
    session: Session, master: MasterKey, agreement_id: str, dataset: str, now: datetime
) -> tuple[DataKey, bytes]:
    """The live data key of (agreement, dataset), created on first use. Returns (row, key)."""
    row = live_data_key(session, agreement_id, dataset)
    if row is not None:
        return row, unwrap(master, row)
    raw = AESGCM.generate_key(bit_length=256)
    row = DataKey(
        id=new_id("dk"),
        agreement_id=agreement_id,
        dataset=dataset,
        kek_id=kek_id(master),
        created_at=now,
    )
    row.wrapped = seal(_kek(master, row.kek_id), raw, _key_ad(row))
    try:
        # Two first submissions racing: the unique index on live keys lets one win; the other
        # uses the winner's key instead of failing.
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        winner = live_data_key(session, agreement_id, dataset)
        if winner is None:  # pragma: no cover - the conflict came from somewhere else
            raise
        return winner, unwrap(master, winner)
    return row, raw


def unwrap(master: MasterKey, row: DataKey) -> bytes:
    if row.wrapped is None or row.destroyed_at is not None:
        raise DataDestroyed("The data key of this data has been destroyed.")
    return unseal(_kek(master, row.kek_id), row.wrapped, _key_ad(row))


def destroy_data_key(row: DataKey, now: datetime) -> None:
    """Crypto-shred every segment under ``row``: the wrapped key is erased, the row kept."""
    row.wrapped = None
    row.destroyed_at = now


def rewrap_all(session: Session, old: MasterKey, new: MasterKey) -> int:
    """Re-wrap every live data key under ``new`` (master key rotation); segments are untouched.

    All or nothing: a key that ``old`` cannot unwrap aborts the whole operation.
    """
    count = 0
    for row in session.scalars(select(DataKey).where(DataKey.destroyed_at.is_(None))):
        raw = unwrap(old, row)
        row.kek_id = kek_id(new)
        row.wrapped = seal(_kek(new, row.kek_id), raw, _key_ad(row))
        count += 1
    session.flush()
    return count


# -- segments ----------------------------------------------------------------------------------


def encode_part(frame: pl.DataFrame) -> bytes:
    """Parquet, zstd level 1: dictionary-encoded columns make it both smaller and faster to
    write than compressed Arrow IPC (the linkage tokens, random by design, dominate the size)."""
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd", compression_level=1, statistics=False)
    return buf.getvalue()


def decode_part(data: bytes, columns: list[str] | None = None) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data), columns=columns)


@dataclass
class SegmentWriter:
    """Seals the parts of one segment under a fresh segment key as they are produced.

    Sealed parts go to ``spill`` (ciphertext only) so that memory stays bounded by one part.
    """

    ctx: SegmentContext
    spill: Path
    key: bytes = field(default_factory=lambda: AESGCM.generate_key(bit_length=256), repr=False)
    parts: list[tuple[int, int]] = field(default_factory=list)
    row_count: int = 0
    size_bytes: int = 0
    _fh: BinaryIO | None = field(default=None, repr=False)

    def add(self, frame: pl.DataFrame) -> None:
        if self._fh is None:
            self._fh = self.spill.open("xb")
        seq = len(self.parts)
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + AESGCM(self.key).encrypt(nonce, encode_part(frame), self.ctx.part_ad(seq))
        self.parts.append((self.size_bytes, len(sealed)))
        self._fh.write(sealed)
        self.size_bytes += len(sealed)
        self.row_count += frame.height

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def read_back(self, columns: list[str]) -> Iterator[pl.DataFrame]:
        """The sealed parts decrypted again (``columns`` of them), in order."""
        aead = AESGCM(self.key)
        for seq, sealed in self.sealed_parts():
            plain = aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], self.ctx.part_ad(seq))
            yield decode_part(plain, columns)

    def sealed_parts(self) -> Iterator[tuple[int, bytes]]:
        self.close()
        if not self.parts:
            return
        with self.spill.open("rb") as fh:
            for seq, (offset, length) in enumerate(self.parts):
                fh.seek(offset)
                yield seq, fh.read(length)


def store_segment(
    session: Session,
    master: MasterKey,
    writer: SegmentWriter,
    schema: dict[str, str],
    now: datetime,
) -> Segment:
    """Wrap the writer's segment key under the data key and insert the segment and its parts."""
    ctx = writer.ctx
    key_row, data_key = data_key_for(session, master, ctx.agreement_id, ctx.dataset, now)
    part_count = len(writer.parts)
    segment = Segment(
        submission_id=ctx.submission_id,
        data_key_id=key_row.id,
        format=SEGMENT_FORMAT,
        ciphertext=None,
        size_bytes=writer.size_bytes,
        schema=schema,
        wrapped_key=seal(
            data_key, writer.key, ctx.key_ad(key_row.id, part_count, writer.row_count)
        ),
        part_count=part_count,
        row_count=writer.row_count,
    )
    session.add(segment)
    session.flush()
    # One part per statement: memory stays bounded by a part, not by the submission.
    for seq, sealed in writer.sealed_parts():
        part = SegmentPart(submission_id=ctx.submission_id, seq=seq, ciphertext=sealed)
        session.add(part)
        session.flush()
        session.expunge(part)
    return segment


class DataKeys:
    """Unwrapped data keys for the duration of one read (never kept beyond it)."""

    def __init__(self, session: Session, master: MasterKey) -> None:
        self.session = session
        self.master = master
        self._keys: dict[str, bytes] = {}

    def data_key(self, data_key_id: str) -> bytes:
        if data_key_id not in self._keys:
            row = self.session.get(DataKey, data_key_id)
            if row is None:
                raise DataDestroyed("The data key of this data has been destroyed.")
            self._keys[data_key_id] = unwrap(self.master, row)
        return self._keys[data_key_id]


def seal_under(keys: DataKeys, key_ids: Iterable[str], plaintext: bytes, label: str) -> bytes:
    """Encrypt ``plaintext`` under every given data key in turn, so that destroying any of them
    (crypto-shredding the records those keys protect) destroys it too. ``label`` binds the
    result to its use (associated data)."""
    ids = sorted(set(key_ids))
    blob = plaintext
    for key_id in ids:
        blob = seal(keys.data_key(key_id), blob, f"backbone/under/v1|{label}|{key_id}".encode())
    header = json.dumps(ids).encode()
    return len(header).to_bytes(4, "big") + header + blob


def open_under(keys: DataKeys, sealed: bytes, label: str) -> bytes:
    """Inverse of :func:`seal_under`; raises :class:`DataDestroyed` when a key was destroyed."""
    size = int.from_bytes(sealed[:4], "big")
    ids = json.loads(sealed[4 : 4 + size])
    blob = sealed[4 + size :]
    for key_id in reversed(ids):
        blob = unseal(keys.data_key(key_id), blob, f"backbone/under/v1|{label}|{key_id}".encode())
    return blob


def load_segment(
    session: Session,
    segment: Segment,
    ctx: SegmentContext,
    keys: DataKeys,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """Decrypt one segment into a frame, checking that its parts are exactly the sealed ones.

    ``columns`` selects the columns to decode (all when None)."""
    data_key = keys.data_key(segment.data_key_id)
    if segment.format == LEGACY_FORMAT:
        if segment.ciphertext is None:  # pragma: no cover - a legacy segment has its ciphertext
            raise SegmentCorrupt("a legacy segment without ciphertext")
        return pl.read_ipc(
            io.BytesIO(unseal(data_key, segment.ciphertext, ctx.associated_data())),
            columns=columns,
        )
    if segment.wrapped_key is None:
        raise DataDestroyed("The key of this submission has been destroyed.")
    segment_key = unseal(
        data_key,
        segment.wrapped_key,
        ctx.key_ad(segment.data_key_id, segment.part_count, segment.row_count),
    )
    aead = AESGCM(segment_key)
    frames: list[pl.DataFrame] = []
    parts = session.execute(
        select(SegmentPart.seq, SegmentPart.ciphertext)
        .where(SegmentPart.submission_id == segment.submission_id)
        .order_by(SegmentPart.seq)
    )
    expected = 0
    for seq, sealed in parts:
        if seq != expected:
            raise SegmentCorrupt(f"segment {segment.submission_id}: part {expected} is missing")
        plain = aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ctx.part_ad(seq))
        frames.append(decode_part(plain, columns))
        expected += 1
    if expected != segment.part_count:
        raise SegmentCorrupt(f"segment {segment.submission_id}: parts are missing")
    frame = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    if frame.height != segment.row_count:
        raise SegmentCorrupt(f"segment {segment.submission_id}: row count mismatch")
    return frame
