"""Retention: expiry, termination and withdrawal plus the grace period end in crypto-shredding,
with an audit event; after a purge the data cannot be decrypted even from a copy of the DB."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from typer.testing import CliRunner

from agreements import service as agreements
from agreements.service import PolicyCache
from audit.models import AuditEvent
from core.context import RequestContext
from core.db import make_engine
from core.keys import MasterKey
from records import retention, service, vault
from records.intake import IntakeLimits
from records.models import DataKey, Segment, SegmentPart, Submission
from tests.conftest import BACKEND, MASTER
from tests.records.helpers import (
    agreement_document,
    as_manager,
    make_agreement,
    random_master,
    seed_minimal,
)

SURVEY = (
    "person_id,case_number,birth_date,school_year,home_language,score,visits,enrolled\n"
    + "".join(f"RT{i:06d},{i},2019-01-0{1 + i % 9},2025-26,en,{i}.5,{i},true\n" for i in range(40))
).encode()


def ctx(now):
    return RequestContext("purge-test", now, None)


def purge_events(session, action):
    return session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.idx)
    ).all()


def loadable(session, sid, master=MASTER):
    return service.load_frame(session, master, [session.get(Submission, sid)])


@pytest.fixture
def survey(session, clock):
    """A custom agreement between the district and the backbone with a 10-day grace period."""
    uid = "retention-" + os.urandom(3).hex()
    make_agreement(session, agreement_document(uid, grace_days=10), clock())
    return uid


def test_termination_then_grace_period_then_shredding(session, clock, survey, submit_file):
    a = submit_file(SURVEY, dataset="survey").submission_id
    b = submit_file(SURVEY.replace(b"RT", b"RU"), dataset="survey").submission_id
    key_id = session.get(Segment, a).data_key_id
    assert loadable(session, a).height == 40
    agreements.change_status(session, as_manager("district", clock()), survey, "terminate", "ended")
    ended = clock()

    report = retention.purge(session, ctx(ended), ended + timedelta(days=10) - timedelta(seconds=1))
    assert report.agreements == []
    assert loadable(session, b).height == 40

    now = ended + timedelta(days=10)
    report = retention.purge(session, ctx(now), now)
    assert [
        (r["agreement"], r["reason"], r["submissions"], r["rows"]) for r in report.agreements
    ] == [(survey, "terminated", 2, 80)]
    key = session.get(DataKey, key_id)
    assert key.wrapped is None and key.destroyed_at == now
    for sid in (a, b):
        sub = session.get(Submission, sid)
        assert (sub.status, sub.purged_at) == ("purged", now)
        assert session.get(Segment, sid) is None
        assert (
            session.scalars(select(SegmentPart).where(SegmentPart.submission_id == sid)).all() == []
        )
    event = purge_events(session, "records.purge")[-1]
    assert event.resource_id == survey and event.counts == {
        "data_keys": 1,
        "submissions": 2,
        "rows": 80,
    }
    assert "terminated" in event.detail
    with pytest.raises(vault.DataDestroyed):
        loadable(session, a)
    # Receipts stay, and the purged data is out of every later release.
    assert session.get(Submission, a).body_sha256
    assert service.in_scope(session, "survey", frozenset({survey}), now) == []
    # A second purge finds nothing more to do.
    again = retention.purge(session, ctx(now), now + timedelta(days=1))
    assert not again.purged_anything


def test_expiry_counts_from_the_end_of_the_term(session, clock, submit_file):
    uid = "expiring-" + os.urandom(3).hex()
    expires = (clock() + timedelta(days=2)).date().isoformat()
    make_agreement(session, agreement_document(uid, grace_days=5, expires=expires), clock())
    sid = submit_file(SURVEY, dataset="survey").submission_id
    end = datetime.fromisoformat(expires).replace(tzinfo=UTC)
    assert not retention.purge(session, ctx(end), end + timedelta(days=4)).purged_anything
    report = retention.purge(session, ctx(end), end + timedelta(days=5))
    assert report.agreements[0]["reason"] == "expired"
    assert session.get(Submission, sid).status == "purged"


def test_suspension_and_amendment_do_not_end_an_agreement(session, clock, survey, submit_file):
    sid = submit_file(SURVEY, dataset="survey").submission_id
    agreements.change_status(session, as_manager("district", clock()), survey, "suspend", None)
    far = clock() + timedelta(days=3650)

    def purged() -> list[str]:
        return [a["agreement"] for a in retention.purge(session, ctx(far), far).agreements]

    assert survey not in purged()
    agreements.change_status(session, as_manager("district", clock()), survey, "resume", None)
    make_agreement(
        session, agreement_document(survey, grace_days=10) | {"title": "Amended"}, clock()
    )
    assert survey not in purged()
    assert loadable(session, sid).height == 40


def test_withdrawal_shreds_only_that_submission(session, clock, survey, submit_file, api):
    keep = submit_file(SURVEY, dataset="survey").submission_id
    gone = submit_file(SURVEY.replace(b"RT", b"RW"), dataset="survey").submission_id
    old = submit_file(
        SURVEY.replace(b"RT", b"RX"), dataset="survey", period="2025-26"
    ).submission_id
    new = submit_file(
        SURVEY.replace(b"RT", b"RY"), dataset="survey", period="2025-26", replaces=old
    ).submission_id
    segment_key = session.get(Segment, gone).wrapped_key
    data_key_id = session.get(Segment, gone).data_key_id
    withdrawn_at = clock()
    service.withdraw(session, ctx_of(session, clock()), gone)

    assert not retention.purge(
        session, ctx(withdrawn_at), withdrawn_at + timedelta(days=9)
    ).submissions
    now = withdrawn_at + timedelta(days=10)
    report = retention.purge(session, ctx(now), now)
    assert sorted((r["submission"], r["reason"]) for r in report.submissions) == sorted(
        [(gone, "withdrawn"), (old, "replaced")]
    )
    assert report.agreements == []
    # The others, and the shared data key, are untouched.
    assert loadable(session, keep).height == 40 and loadable(session, new).height == 40
    assert session.get(DataKey, data_key_id).wrapped is not None
    # The withdrawn one's segment key existed only in its segment row: nothing can open it.
    assert session.get(Segment, gone) is None
    assert segment_key not in {s.wrapped_key for s in session.scalars(select(Segment))}
    events = purge_events(session, "submission.purge")
    assert {e.resource_id for e in events[-2:]} == {gone, old}
    assert all("crypto-shredded" in e.detail for e in events[-2:])


def ctx_of(session, now):
    from tests.records.conftest import context

    return context(session, "district-sis", now)


# -- on a database of its own: scrubbing, the start-up check, the CLI ----------------------------


def _db_bytes(url: str, engine) -> bytes:
    if BACKEND != "postgres":
        db = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())
    from tests.records.test_at_rest import postgres_bytes

    return b"".join(postgres_bytes(engine).values())


def test_after_purge_no_copy_of_the_database_can_open_the_data(fresh_databases, tmp_path, clock):
    master = random_master()
    uid = "scrub-" + os.urandom(3).hex()
    seeded = seed_minimal(fresh_databases.url(), master, [agreement_document(uid, grace_days=0)])
    engine = make_engine(seeded.url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions() as session:
        body = tmp_path / "body.csv"
        body.write_bytes(SURVEY)
        req = service.SubmissionRequest(
            dataset="survey", body=body, content_type="text/csv", content_encoding=None,
            body_sha256=service.sha256_file(body), limits=IntakeLimits(max_bytes=1 << 20),
            scratch=tmp_path / "spill",
        )  # fmt: skip
        receipt, _ = service.submit(
            session, ctx_of(session, clock()), master, PolicyCache().get(session), req
        )
        session.commit()
        sid = receipt.submission_id
        segment = session.get(Segment, sid)
        data_key = session.get(DataKey, segment.data_key_id)
        # What an attacker would have copied before the purge: every ciphertext and wrapped key.
        stolen = {
            "data key": bytes(data_key.wrapped),
            "segment key": bytes(segment.wrapped_key),
            **{
                f"part {p.seq}": bytes(p.ciphertext)
                for p in session.scalars(
                    select(SegmentPart).where(SegmentPart.submission_id == sid)
                )
            },
        }
        agreements.change_status(session, as_manager("district", clock()), uid, "terminate", None)
        session.commit()

    report = retention.purge_and_scrub(sessions, engine, clock() + timedelta(seconds=1), tmp_path)
    assert [a["agreement"] for a in report.agreements] == [uid]
    assert report.scrubbed is True
    after = _db_bytes(seeded.url, engine)
    assert uid.encode() in after  # the search reads the database
    for what, blob in stolen.items():
        assert blob not in after, f"the {what} is still in the database files"
    # The stolen ciphertext needs the data key, and the master key no longer unwraps it.
    with sessions() as session:
        row = session.get(DataKey, data_key.id)
        assert row.wrapped is None
        with pytest.raises(vault.DataDestroyed):
            vault.unwrap(master, row)
    engine.dispose()


def test_startup_check_sweeps_upload_directories_of_dead_processes(tmp_path):
    root = retention.scratch_root(tmp_path)
    root.mkdir(parents=True)
    mine = retention.new_scratch(tmp_path)
    (mine / "segment.sealed").write_bytes(b"ciphertext")
    dead = root / "999999999.12345.up_dead"
    dead.mkdir()
    (dead / "segment.sealed").write_bytes(b"ciphertext")
    assert retention.sweep_scratch(tmp_path) == 1
    assert mine.exists() and not dead.exists()


def test_cli_purge_and_rewrap(fresh_databases, tmp_path, monkeypatch, clock):
    from cli.records import records_app
    from core.keys import encode_key
    from core.settings import get_settings

    old = random_master()
    uid = "cli-" + os.urandom(3).hex()
    seeded = seed_minimal(fresh_databases.url(), old, [agreement_document(uid, grace_days=1)])
    engine = make_engine(seeded.url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions() as session:
        body = tmp_path / "body.csv"
        body.write_bytes(SURVEY)
        req = service.SubmissionRequest(
            dataset="survey", body=body, content_type="text/csv", content_encoding=None,
            body_sha256=service.sha256_file(body), limits=IntakeLimits(max_bytes=1 << 20),
            scratch=tmp_path / "spill",
        )  # fmt: skip
        sid = service.submit(
            session, ctx_of(session, clock()), old, PolicyCache().get(session), req
        )[0].submission_id
        agreements.change_status(session, as_manager("district", clock()), uid, "terminate", None)
        session.commit()

    new = MasterKey(os.urandom(32))
    old_file = tmp_path / "old.key"
    old_file.write_text(encode_key(old.raw))
    monkeypatch.setenv("BACKBONE_DATABASE_URL", seeded.url)
    monkeypatch.setenv("BACKBONE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BACKBONE_MASTER_KEY", encode_key(new.raw))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        result = runner.invoke(records_app, ["rewrap", "--old-key-file", str(old_file)])
        assert result.exit_code == 0, result.output
        assert "re-wrapped 1 data key(s)" in result.output
        with sessions() as session:
            assert loadable(session, sid, new).height == 40
            with pytest.raises(vault.WrongMasterKey):
                loadable(session, sid, old)

        result = runner.invoke(records_app, ["purge"])
        assert result.exit_code == 0, result.output
        assert "nothing to purge" in result.output  # the grace period has not passed
        later = (clock() + timedelta(days=2)).isoformat()
        result = runner.invoke(records_app, ["purge", "--dry-run", "--at", later])
        assert f"agreement {uid} (terminated" in result.output and "dry run" in result.output
        with sessions() as session:
            assert session.get(Submission, sid).status == "accepted"
        result = runner.invoke(records_app, ["purge", "--at", later, "--json"])
        assert result.exit_code == 0, result.output
        assert '"scrubbed": true' in result.output
        with sessions() as session:
            assert session.get(Submission, sid).status == "purged"
    finally:
        get_settings.cache_clear()
        engine.dispose()


@pytest.mark.postgres_only
def test_only_one_purge_runs_at_a_time(fresh_databases, clock):
    seeded = seed_minimal(fresh_databases.url(), random_master(), [])
    engine = make_engine(seeded.url)
    sessions = sessionmaker(bind=engine)
    try:
        with sessions() as first, sessions() as second:
            assert not retention.purge(first, ctx(clock()), clock()).skipped
            assert retention.purge(second, ctx(clock()), clock()).skipped
            first.rollback()
            assert not retention.purge(second, ctx(clock()), clock()).skipped
    finally:
        engine.dispose()
