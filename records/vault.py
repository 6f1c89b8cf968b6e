"""The encrypted record vault: envelope encryption of columnar segments.

Each (agreement, dataset) has a random 256-bit data key, stored only wrapped (AES-256-GCM) by a
key-encryption key derived from the master key. Each segment is encrypted with its data key under
AES-256-GCM with associated data naming agreement, version, dataset and submission, so a segment
copied under another submission's row, or replayed into another agreement, fails to decrypt.
Rotating the master key re-wraps data keys and never touches segments.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict
from core.ids import new_id
from core.keys import MasterKey, seal, unseal
from records.models import DataKey, Segment

KEK_ID = "kek-v1"
SEGMENT_FORMAT = "arrow-ipc-zstd"


class DataDestroyed(Conflict):
    kind = "data-destroyed"
    title = "The data has been destroyed"


@dataclass(frozen=True)
class SegmentContext:
    agreement_id: str
    agreement_version: int
    dataset: str
    submission_id: str

    def associated_data(self) -> bytes:
        return (
            f"backbone/segment/v1|{self.agreement_id}|{self.agreement_version}"
            f"|{self.dataset}|{self.submission_id}"
        ).encode()


def _kek(master: MasterKey, kek_id: str = KEK_ID) -> bytes:
    return master.derive(f"kek/{kek_id}")


def _key_ad(key: DataKey) -> bytes:
    return f"backbone/data-key/v1|{key.id}|{key.agreement_id}|{key.dataset}".encode()


def data_key_for(
    session: Session, master: MasterKey, agreement_id: str, dataset: str, now: datetime
) -> tuple[DataKey, bytes]:
    """The live data key of (agreement, dataset), created on first use. Returns (row, key)."""
    row = session.scalars(
        select(DataKey).where(
            DataKey.agreement_id == agreement_id,
            DataKey.dataset == dataset,
            DataKey.destroyed_at.is_(None),
        )
    ).first()
    if row is None:
        row = DataKey(
            id=new_id("dk"),
            agreement_id=agreement_id,
            dataset=dataset,
            kek_id=KEK_ID,
            created_at=now,
        )
        raw = os.urandom(32)
        row.wrapped = seal(_kek(master), raw, _key_ad(row))
        session.add(row)
        session.flush()
        return row, raw
    return row, unwrap(master, row)


def unwrap(master: MasterKey, row: DataKey) -> bytes:
    if row.wrapped is None or row.destroyed_at is not None:
        raise DataDestroyed("The data key of this data has been destroyed.")
    return unseal(_kek(master, row.kek_id), row.wrapped, _key_ad(row))


def encrypt_frame(frame: pl.DataFrame, key: bytes, ctx: SegmentContext) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc(buf, compression="zstd")
    return seal(key, buf.getvalue(), ctx.associated_data())


def decrypt_frame(ciphertext: bytes, key: bytes, ctx: SegmentContext) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(unseal(key, ciphertext, ctx.associated_data())))


def store_segment(
    session: Session,
    master: MasterKey,
    frame: pl.DataFrame,
    ctx: SegmentContext,
    now: datetime,
) -> Segment:
    key_row, key = data_key_for(session, master, ctx.agreement_id, ctx.dataset, now)
    ciphertext = encrypt_frame(frame, key, ctx)
    segment = Segment(
        submission_id=ctx.submission_id,
        data_key_id=key_row.id,
        format=SEGMENT_FORMAT,
        ciphertext=ciphertext,
        size_bytes=len(ciphertext),
        schema={name: str(dtype) for name, dtype in frame.schema.items()},
    )
    session.add(segment)
    return segment


def load_segment(
    session: Session, master: MasterKey, segment: Segment, ctx: SegmentContext
) -> pl.DataFrame:
    key_row = session.get(DataKey, segment.data_key_id)
    if key_row is None:
        raise DataDestroyed("The data key of this data has been destroyed.")
    return decrypt_frame(segment.ciphertext, unwrap(master, key_row), ctx)


def rewrap_all(session: Session, old: MasterKey, new: MasterKey) -> int:
    """Re-wrap every live data key under ``new`` (master key rotation); segments are untouched."""
    count = 0
    for row in session.scalars(select(DataKey).where(DataKey.destroyed_at.is_(None))):
        raw = unwrap(old, row)
        row.wrapped = seal(_kek(new, row.kek_id), raw, _key_ad(row))
        count += 1
    session.flush()
    return count
