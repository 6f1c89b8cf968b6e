"""The two-stage ingest pipeline: results, refusals from either stage, and no stuck threads."""

from __future__ import annotations

import io
import os
import threading

import anyio
import pytest

from policy.model import DatasetTerms, FieldTerms
from records import ingest, intake, vault
from records.errors import MalformedBody, SubmissionRejected
from records.pseudonymize import Tokenizer
from records.vault import SegmentContext

F = FieldTerms
DATASET = DatasetTerms(
    "t", "p", frozenset(),
    (F("pid", "string", "identifier", required=True), F("n", "integer", "measure", minimum=0)),
    key=("pid",),
)  # fmt: skip


def spec(tmp_path, fmt="csv"):
    return ingest.IngestSpec(
        fmt=fmt, coding="identity", limits=intake.IntakeLimits(max_bytes=1 << 30),
        dataset=DATASET, period=None, tokenizer=Tokenizer(os.urandom(32)),
        segment=SegmentContext("a", 1, "t", "sub_x"), spill=tmp_path / "spill",
        on_columns=lambda columns: None,
    )  # fmt: skip


def body(n: int, bad_at: int | None = None, dup_at: int | None = None) -> bytes:
    rows = []
    for i in range(n):
        pid = "P0" if dup_at is not None and i == dup_at else f"P{i}"
        rows.append(f"{pid},{'x' if i == bad_at else i}\n")
    return ("pid,n\n" + "".join(rows)).encode()


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    monkeypatch.setattr(ingest, "PART_ROWS", 500)
    monkeypatch.setattr(intake, "TEXT_BLOCK", 4096)


def feed_in_background(pipe: intake.BodyPipe, data: bytes, hold: threading.Event | None = None):
    errors: list[BaseException] = []

    async def feed() -> None:
        for i in range(0, len(data), 1000):
            await pipe.feed(data[i : i + 1000])
            if hold is not None and i > len(data) // 2:
                while not hold.is_set():
                    await anyio.sleep(0.01)
        pipe.finish()

    def run() -> None:
        try:
            anyio.run(feed)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_a_valid_body_is_sealed_in_parts(tmp_path):
    pipe = intake.BodyPipe(capacity=8192)
    thread, _ = feed_in_background(pipe, body(5000))
    prepared = ingest.ingest(pipe, spec(tmp_path))
    thread.join(10)
    assert prepared.row_count == 5000
    assert len(prepared.writer.parts) >= 5
    frames = list(prepared.writer.read_back(["n"]))
    assert [v for f in frames for v in f["n"].to_list()] == list(range(5000))


def test_errors_after_the_first_stop_sealing_but_are_all_counted(tmp_path, monkeypatch):
    added = []
    original = vault.SegmentWriter.add
    monkeypatch.setattr(
        vault.SegmentWriter, "add", lambda self, f: (added.append(f.height), original(self, f))
    )
    data = (
        body(5000)
        .replace(b"\nP100,100\n", b"\nP100,x\n")
        .replace(b"\nP4900,4900\n", b"\nP4900,-1\n")
    )
    with pytest.raises(SubmissionRejected) as err:
        ingest.ingest(io.BytesIO(data), spec(tmp_path))
    report = err.value.extra["report"]
    assert report["counts"] == {"minimum": 1, "type": 1}
    assert [e["row"] for e in report["errors"]] == [101, 4901]
    assert sum(added) < 500  # nothing sealed after the batch with the first error


def test_duplicate_keys_across_parts_are_found_exactly(tmp_path):
    with pytest.raises(SubmissionRejected) as err:
        ingest.ingest(io.BytesIO(body(3000, dup_at=2500)), spec(tmp_path))
    report = err.value.extra["report"]
    assert report["counts"] == {"duplicate-key": 1}
    assert report["errors"][0]["row"] == 2501


def test_a_reader_failure_late_in_the_body_stops_everything(tmp_path):
    pipe = intake.BodyPipe(capacity=8192)
    data = body(5000) + b"ragged\n" + body(10)[6:]
    thread, _ = feed_in_background(pipe, data)
    with pytest.raises(MalformedBody):
        ingest.ingest(pipe, spec(tmp_path))
    thread.join(10)
    assert not thread.is_alive()


def test_a_sealing_failure_aborts_the_body_and_the_reader(tmp_path, monkeypatch):
    def broken(self, frame):
        raise OSError("disk full")

    monkeypatch.setattr(vault.SegmentWriter, "add", broken)
    pipe = intake.BodyPipe(capacity=8192)
    hold = threading.Event()  # the client keeps the upload open half-way
    thread, errors = feed_in_background(pipe, body(20000), hold)
    with pytest.raises(OSError, match="disk full"):
        ingest.ingest(pipe, spec(tmp_path))
    # The pipe was aborted: the feeding side stops instead of waiting for a reader forever.
    hold.set()
    thread.join(10)
    assert not thread.is_alive()
    assert errors and isinstance(errors[0], intake.BodyAborted)
    assert not [t for t in threading.enumerate() if t.name == "ingest-reader"]


def test_unexpected_library_errors_do_not_carry_values(tmp_path, monkeypatch):
    import polars as pl

    def leaky(self, frame):
        raise pl.exceptions.ComputeError("could not parse `P1234-SECRET` as i64")

    monkeypatch.setattr(vault.SegmentWriter, "add", leaky)
    with pytest.raises(ingest.IngestFailure) as err:
        ingest.ingest(io.BytesIO(body(10)), spec(tmp_path))
    assert "SECRET" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
