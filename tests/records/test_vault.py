"""The vault: envelope encryption, associated data, part integrity, re-wrap, destruction."""

from __future__ import annotations

import io
import os

import polars as pl
import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select

from core.keys import MasterKey, seal
from records import service, vault
from records.models import DataKey, Segment, SegmentPart, Submission
from tests.conftest import MASTER

CSV = b"student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n" + b"".join(
    f"VX{i:08d},2025-26,Ashland,Asian,true,{50 + i % 40}\n".encode() for i in range(300)
)


def load(session, submission_id, master=MASTER):
    row = session.get(Submission, submission_id)
    return service.load_frame(session, master, [row])


def test_round_trip_over_several_parts(session, submit_file, monkeypatch):
    monkeypatch.setattr("records.ingest.PART_ROWS", 64)
    monkeypatch.setattr("records.intake.TEXT_BLOCK", 4096)
    receipt = submit_file(CSV)
    segment = session.get(Segment, receipt.submission_id)
    assert segment.part_count >= 3 and segment.row_count == 300
    frame = load(session, receipt.submission_id)
    assert frame.height == 300
    assert frame["assessment_score"].to_list() == [50 + i % 40 for i in range(300)]
    assert frame["student_id"].dtype == pl.Binary  # tokens, never the raw identifier
    assert all(len(t) == 32 for t in frame["student_id"].to_list())


def _parts(session, sid):
    return session.scalars(
        select(SegmentPart).where(SegmentPart.submission_id == sid).order_by(SegmentPart.seq)
    ).all()


def test_parts_cannot_be_dropped_reordered_or_moved(session, submit_file, monkeypatch):
    monkeypatch.setattr("records.ingest.PART_ROWS", 64)
    monkeypatch.setattr("records.intake.TEXT_BLOCK", 4096)
    a = submit_file(CSV).submission_id
    b = submit_file(CSV.replace(b"VX", b"VY")).submission_id
    pa, pb = _parts(session, a), _parts(session, b)
    # A part of submission b copied over a's: the associated data names the submission.
    original = pa[1].ciphertext
    pa[1].ciphertext = pb[1].ciphertext
    session.flush()
    with pytest.raises(InvalidTag):
        load(session, a)
    # Two parts of a swapped: the associated data names the position.
    pa[1].ciphertext, pa[2].ciphertext = pa[2].ciphertext, original
    session.flush()
    with pytest.raises(InvalidTag):
        load(session, a)
    pa[2].ciphertext, pa[1].ciphertext = pa[1].ciphertext, original
    session.flush()
    assert load(session, a).height == 300
    # The last part deleted, and the count in the segment row lowered to match: the count is
    # bound into the wrapped segment key, so the key no longer opens.
    session.delete(pa[-1])
    session.flush()
    with pytest.raises(vault.SegmentCorrupt):
        load(session, a)
    segment = session.get(Segment, a)
    segment.part_count -= 1
    session.flush()
    with pytest.raises(InvalidTag):
        load(session, a)


def test_a_segment_under_another_submission_does_not_open(session, submit_file):
    a = submit_file(CSV).submission_id
    b = submit_file(CSV.replace(b"VX", b"VZ")).submission_id
    sa, sb = session.get(Segment, a), session.get(Segment, b)
    sa.wrapped_key = sb.wrapped_key
    session.flush()
    with pytest.raises(InvalidTag):
        load(session, a)


def test_one_data_key_per_agreement_and_dataset(session, submit_file):
    a = submit_file(CSV).submission_id
    b = submit_file(CSV.replace(b"VX", b"VW")).submission_id
    sa, sb = session.get(Segment, a), session.get(Segment, b)
    assert sa.data_key_id == sb.data_key_id
    live = session.scalars(
        select(DataKey).where(
            DataKey.agreement_id == "district-early-learning-outcomes",
            DataKey.dataset == "kindergarten_readiness",
            DataKey.destroyed_at.is_(None),
        )
    ).all()
    assert len(live) == 1
    assert sa.wrapped_key != sb.wrapped_key  # a segment key per submission


def test_rewrap_changes_only_the_wrapping(session, submit_file):
    sid = submit_file(CSV).submission_id
    before = load(session, sid)
    parts_before = [p.ciphertext for p in _parts(session, sid)]
    segment_key_before = session.get(Segment, sid).wrapped_key
    new = MasterKey(os.urandom(32))
    count = vault.rewrap_all(session, MASTER, new)
    assert count >= 1
    assert [p.ciphertext for p in _parts(session, sid)] == parts_before
    assert session.get(Segment, sid).wrapped_key == segment_key_before
    assert load(session, sid, new).equals(before)
    with pytest.raises(vault.WrongMasterKey):
        load(session, sid, MASTER)


def test_destroyed_data_key_cannot_open_anything(session, submit_file, clock):
    sid = submit_file(CSV).submission_id
    key = session.get(DataKey, session.get(Segment, sid).data_key_id)
    vault.destroy_data_key(key, clock())
    session.flush()
    with pytest.raises(vault.DataDestroyed):
        load(session, sid)


def test_legacy_segments_from_revision_0001_are_still_read(session, submit_file):
    sid = submit_file(CSV).submission_id
    frame = load(session, sid)
    sub = session.get(Submission, sid)
    segment = session.get(Segment, sid)
    ctx = vault.SegmentContext(sub.agreement_id, sub.agreement_version, sub.dataset, sub.id)
    data_key = vault.unwrap(MASTER, session.get(DataKey, segment.data_key_id))
    buf = io.BytesIO()
    frame.write_ipc(buf, compression="zstd")
    for part in _parts(session, sid):
        session.delete(part)
    session.flush()
    segment.format = vault.LEGACY_FORMAT
    segment.ciphertext = seal(data_key, buf.getvalue(), ctx.associated_data())
    segment.wrapped_key = None
    session.flush()
    assert load(session, sid).equals(frame)
