"""A real server process killed in the middle of a large submission: no trace of it after a
restart, and every submission acknowledged before the kill intact."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from audit.models import AuditEvent
from core.db import make_engine
from records import service
from records.models import IdempotencyReservation, Submission
from records.retention import scratch_root
from tests.records.helpers import (
    ServerProcess,
    agreement_document,
    counts,
    random_master,
    seed_minimal,
)

pytestmark = [pytest.mark.process, pytest.mark.slow]
URL = "/v1/datasets/survey/submissions"
COLUMNS = "person_id,case_number,birth_date,school_year,home_language,score,visits,enrolled\n"


def body(rows: int, prefix: str) -> bytes:
    return (
        COLUMNS
        + "".join(
            f"{prefix}{i:07d},{i},2019-0{1 + i % 9}-1{i % 9},2025-26,lang{i % 7},{i % 100}.25,{i},"
            f"{'true' if i % 2 else 'false'}\n"
            for i in range(rows)
        )
    ).encode()


def chunks(data: bytes, size: int = 256 << 10):
    for i in range(0, len(data), size):
        yield data[i : i + size]


class Upload(threading.Thread):
    """A streaming POST in the background that can pause after ``pause_after`` bytes."""

    def __init__(
        self, server: ServerProcess, token: str, data: bytes, key: str, pause_after: int | None
    ) -> None:
        super().__init__(daemon=True)
        self.server, self.token, self.data, self.key = server, token, data, key
        self.pause_after = pause_after
        self.paused = threading.Event()
        self.sent_all = threading.Event()
        self.resume = threading.Event()
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None

    def stream(self):
        sent = 0
        for chunk in chunks(self.data):
            if (
                self.pause_after is not None
                and sent >= self.pause_after
                and not self.paused.is_set()
            ):
                self.paused.set()
                self.resume.wait(30)
            yield chunk
            sent += len(chunk)
        self.sent_all.set()

    def run(self) -> None:
        try:
            self.response = httpx.post(
                self.server.base + URL,
                content=self.stream(),
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "text/csv",
                    "Idempotency-Key": self.key,
                },
                timeout=60,
            )
        except BaseException as exc:  # the server is killed under it
            self.error = exc


def post(
    server: ServerProcess, token: str, data: bytes, ctype: str = "text/csv", key: str | None = None
):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": ctype}
    if key:
        headers["Idempotency-Key"] = key
    return httpx.post(server.base + URL, content=data, headers=headers, timeout=120)


def scratch_dirs(data_dir: Path) -> list[Path]:
    root = scratch_root(data_dir)
    return sorted(root.iterdir()) if root.is_dir() else []


def state(sessions) -> dict[str, Any]:
    with sessions() as session:
        snapshot: dict[str, Any] = counts(session)
        snapshot["submission.create events"] = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "submission.create")
        )
        return snapshot


def check_intact(sessions, master, acknowledged: dict[str, tuple[bytes, dict[str, Any]]]) -> None:
    with sessions() as session:
        for sid, (data, receipt) in acknowledged.items():
            sub = session.get(Submission, sid)
            assert sub is not None and sub.status == "accepted"
            assert sub.row_count == receipt["row_count"]
            assert sub.body_sha256 == hashlib.sha256(data).hexdigest()
            frame = service.load_frame(session, master, [sub])
            original = (
                pl.read_ndjson(data, schema={c: pl.String for c in COLUMNS.strip().split(",")})
                if data.startswith(b"{")
                else pl.read_csv(data, infer_schema=False)
            )
            assert frame.height == original.height
            assert frame["visits"].to_list() == [int(v) for v in original["visits"]]
            assert frame["home_language"].to_list() == original["home_language"].to_list()


def test_kill_mid_upload_and_mid_processing_leaves_no_trace(fresh_databases, tmp_path):
    master = random_master()
    seeded = seed_minimal(
        fresh_databases.url(), master, [agreement_document("kill-test", key=["person_id"])]
    )
    engine = make_engine(seeded.url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    data_dir = tmp_path / "var"
    server = ServerProcess(seeded, data_dir)
    acknowledged: dict[str, tuple[bytes, dict[str, Any]]] = {}
    try:
        server.start()
        token = server.token("district-sis")
        # Acknowledged before any kill: a CSV, an NDJSON body and a larger CSV.
        small = body(20, "KA")
        records = pl.read_csv(body(30, "KB"), infer_schema=False).to_dicts()
        ndjson = "".join(json.dumps(r) + "\n" for r in records).encode()
        large = body(60_000, "KC")
        for data, ctype in (
            (small, "text/csv"),
            (ndjson, "application/x-ndjson"),
            (large, "text/csv"),
        ):
            r = post(server, token, data, ctype)
            assert r.status_code == 201, r.text
            acknowledged[r.json()["id"]] = (data, r.json())
        before = state(sessions)

        # 1. Killed mid-upload: the client has sent part of the body and is still sending.
        huge = body(300_000, "KD")
        upload = Upload(server, token, huge, "interrupted-1", pause_after=4 << 20)
        upload.start()
        assert upload.paused.wait(60)
        deadline = time.monotonic() + 30
        while not scratch_dirs(data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scratch_dirs(data_dir), "the upload should be in progress"
        time.sleep(0.5)  # the server has received and is processing the first megabytes
        # Meanwhile the same Idempotency-Key is in flight: a concurrent request gets 409.
        r = post(server, token, small, key="interrupted-1")
        assert r.status_code == 409 and r.json()["type"] == "/problems/idempotency-in-flight"
        assert r.headers["retry-after"]
        # That refusal is audited (a submission.create event, denied): count it now, so that the
        # check below does not depend on whether a later kill happened to follow a commit (which
        # resets the baseline) or not, that is, on the machine's speed.
        before["submission.create events"] = state(sessions)["submission.create events"]
        server.kill()
        upload.resume.set()
        upload.join(60)
        assert upload.response is None and upload.error is not None

        # 2. Killed mid-processing: the whole body sent, the server still working on it.
        server.start()
        token = server.token("district-sis")
        # Delays after the last byte: the server is still validating and sealing for about a
        # second; the last one lets it commit (and acknowledge, or be killed just before).
        for delay in (0.0, 0.5, 3.0):
            upload = Upload(server, token, huge, f"interrupted-{delay}", pause_after=None)
            upload.start()
            assert upload.sent_all.wait(60)
            time.sleep(delay)
            server.kill()
            upload.join(60)
            server.start()
            token = server.token("district-sis")
            after = state(sessions)
            if after["submissions"] != before["submissions"]:
                # Committed before the kill (acknowledged or not): then it must be whole.
                assert after["submissions"] == before["submissions"] + 1
                with sessions() as session:
                    newest = session.scalars(
                        select(Submission).order_by(Submission.id.desc())
                    ).first()
                    assert newest is not None and newest.row_count == 300_000
                    assert service.load_frame(session, master, [newest]).height == 300_000
                    acknowledged[newest.id] = (huge, {"row_count": 300_000})
                before = after
            else:
                for table in ("submissions", "segments", "segment_parts", "data_keys"):
                    assert after[table] == before[table]

        # After restart: the interrupted submissions left nothing. (Server-side housekeeping runs
        # with the first upload after a start; the lead's start-up hook runs it at start.)
        r = post(server, token, body(5, "KE"), key="after-restart")
        assert r.status_code == 201, r.text
        acknowledged[r.json()["id"]] = (body(5, "KE"), r.json())
        expected = dict(before)
        expected["idempotency_reservations"] = 0
        expected["submissions"] += 1
        expected["segments"] += 1
        expected["segment_parts"] += 1
        expected["submission.create events"] += 1
        assert state(sessions) == expected
        with sessions() as session:
            assert session.scalars(select(IdempotencyReservation)).all() == []
        assert scratch_dirs(data_dir) == []

        # Every acknowledged submission is intact, and readable through the restarted server.
        check_intact(sessions, master, acknowledged)
        for sid in acknowledged:
            r = httpx.get(
                server.base + f"/v1/submissions/{sid}", headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 200 and r.json()["status"] == "accepted"

        # The interrupted request's Idempotency-Key does not block forever: a retry succeeds.
        r = post(server, token, huge, key="interrupted-1")
        assert r.status_code == 201, r.text
        assert r.json()["row_count"] == 300_000
    finally:
        server.stop()
        engine.dispose()
