"""Nothing readable at rest: after ingest, the database files hold no raw identifier, no
linkage token and no record value, searched byte by byte, and neither does the data directory."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import struct
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.app import create_app
from core.db import make_engine, make_session_factory
from core.settings import Settings
from records import vault
from records.pseudonymize import Tokenizer, linkage_key
from tests.conftest import BACKEND, BASE_URL, Api
from tests.records.helpers import Seeded, agreement_document, random_master, seed_minimal

URL = "/v1/datasets/survey/submissions"


@contextmanager
def fresh_app(seeded: Seeded, data_dir: Path) -> Iterator[tuple[Api, Any]]:
    settings = Settings(env="test", data_dir=data_dir, database_url=seeded.url, log_json=False)
    engine = make_engine(seeded.url)
    app = create_app(
        settings,
        engine=engine,
        sessions=make_session_factory(engine),
        master=seeded.master,
        configure_logs=False,
    )
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        yield Api(client, seeded.credentials), engine


def distinctive_records(n: int) -> list[dict[str, Any]]:
    tag = secrets.token_hex(4).upper()
    return [
        {
            "person_id": f"PX{tag}{i:05d}Q",
            "case_number": 771_000_555_000 + i,
            "birth_date": f"19{31 + i % 60:02d}-0{1 + i % 9}-{10 + i % 18}",
            "school_year": f"SY{tag}{i % 3}",
            "home_language": f"Lang{tag}{i:04d}z",
            "score": 7345.125 + i,
            "visits": 918_273_645_123 + i,
            "enrolled": i % 2 == 0,
        }
        for i in range(n)
    ]


def to_csv(records: list[dict[str, Any]]) -> bytes:
    lines = [",".join(records[0])]
    for r in records:
        lines.append(
            ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in r.values())
        )
    return ("\n".join(lines) + "\n").encode()


def needles(records: list[dict[str, Any]], master: Any) -> dict[str, bytes]:
    """Every byte pattern that would betray a record: text, binary numbers and tokens."""
    tok = Tokenizer(linkage_key(master))
    found: dict[str, bytes] = {}
    for i, r in enumerate(records):
        found[f"person_id {i}"] = r["person_id"].encode()
        found[f"person_id lower {i}"] = r["person_id"].lower().encode()
        found[f"birth_date {i}"] = r["birth_date"].encode()
        found[f"school_year {i}"] = r["school_year"].encode()
        found[f"home_language {i}"] = r["home_language"].encode()
        found[f"score text {i}"] = repr(r["score"]).encode()
        found[f"score f64 {i}"] = struct.pack("<d", r["score"])
        found[f"visits text {i}"] = str(r["visits"]).encode()
        found[f"visits i64 {i}"] = struct.pack("<q", r["visits"])
        found[f"token {i}"] = tok.digest(r["person_id"].lower().encode())
        found[f"token head {i}"] = tok.digest(r["person_id"].lower().encode())[:12]
        found[f"case_number text {i}"] = str(r["case_number"]).encode()
        found[f"case_number i64 {i}"] = struct.pack("<q", r["case_number"])
        found[f"case_number token {i}"] = tok.digest(str(r["case_number"]).encode())
    return found


def sqlite_files(url: str) -> list[Path]:
    db = Path(make_url(url).database or "")
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]


def postgres_bytes(engine: Any) -> dict[str, bytes]:
    """Every table's rows as binary COPY, and, when the server's files are readable here (the
    test server runs locally), the table, TOAST and index files themselves after a checkpoint."""
    out: dict[str, bytes] = {}
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cur.fetchall():
            buf = bytearray()
            with cur.copy(f'COPY "{table}" TO STDOUT (FORMAT binary)') as copy:
                for chunk in copy:
                    buf += chunk
            out[f"COPY {table}"] = bytes(buf)
        cur.execute("CHECKPOINT")
        cur.execute("SHOW data_directory")
        data_dir = Path(cur.fetchone()[0])
        cur.execute(
            "SELECT relname, pg_relation_filepath(oid) FROM pg_class "
            "WHERE relkind IN ('r', 't', 'i') AND pg_relation_filepath(oid) IS NOT NULL "
            "AND relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('public', 'pg_toast'))"
        )
        for name, rel in cur.fetchall():
            base = data_dir / rel
            for segment in sorted(base.parent.glob(base.name + "*")):
                with suppress(OSError):
                    out[f"file {name} {segment.name}"] = segment.read_bytes()
        raw.commit()
    finally:
        raw.close()
    return out


class Transparent:
    """Stands in for AES-GCM to prove the search would see unencrypted parts."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def encrypt(self, nonce: bytes, data: bytes, ad: bytes) -> bytes:
        return data + bytes(16)

    @staticmethod
    def generate_key(bit_length: int) -> bytes:
        return bytes(bit_length // 8)


def plain_parquet(frame: Any) -> bytes:
    """Parquet with neither compression nor dictionaries: values appear as they are."""
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(frame.to_arrow(), buf, compression="none", use_dictionary=False)
    return buf.getvalue()


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "canary-unsealed"])
def test_no_identifier_token_or_value_in_the_database_files(
    fresh_databases, tmp_path, monkeypatch, sealed
):
    # Compression alone would hide most values from a byte search; store parts uncompressed so
    # that only the encryption stands between the values and the search.
    monkeypatch.setattr(vault, "encode_part", plain_parquet)
    if not sealed:
        monkeypatch.setattr(vault, "AESGCM", Transparent)
    master = random_master()
    seeded = seed_minimal(
        fresh_databases.url(), master, [agreement_document("at-rest", key=["person_id"])]
    )
    records = distinctive_records(150)
    idem = f"batch-{secrets.token_hex(6)}"
    with fresh_app(seeded, tmp_path / "var") as (api, engine):
        bodies = [
            ("text/csv", to_csv(records[:50]), {}),
            ("application/x-ndjson", "".join(json.dumps(r) + "\n" for r in records[50:100]).encode(), {}),
            ("application/json", gzip.compress(json.dumps(records[100:]).encode()), {"Content-Encoding": "gzip"}),
        ]  # fmt: skip
        ids = []
        for ctype, body, extra in bodies:
            r = api.post(
                URL, as_="district-sis", content=body,
                headers={"Content-Type": ctype, "Idempotency-Key": f"{idem}-{ctype}", **extra},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        assert api.delete(f"/v1/submissions/{ids[0]}", as_="district-sis").status_code == 200
        assert api.get("/v1/submissions", as_="district-sis").status_code == 200

        if BACKEND == "postgres":
            blobs = postgres_bytes(engine)
            assert any(name.startswith("file segment_parts") for name in blobs) or os.geteuid() != 0
        else:
            blobs = {str(p): p.read_bytes() for p in sqlite_files(seeded.url)}
    if BACKEND != "postgres":
        # And once more after the last connection closed and SQLite folded its WAL in.
        blobs |= {f"closed {p}": p.read_bytes() for p in sqlite_files(seeded.url)}
    for path in (tmp_path / "var").rglob("*"):
        if path.is_file():
            blobs[f"data dir {path}"] = path.read_bytes()

    # The search can find things: what is meant to be stored in the clear is there.
    everything = b"".join(blobs.values())
    for control in (ids[1].encode(), b"at-rest", b"survey"):
        assert control in everything
    betrayals = [
        (what, where)
        for what, needle in needles(records, master).items()
        for where, blob in blobs.items()
        if needle in blob
    ]
    assert idem.encode() not in everything
    if not sealed:
        # The canary: without encryption the same search finds tokens and values (raw
        # identifiers never reach storage at all, encrypted or not).
        found = {what.split(" ")[0] for what, _ in betrayals}
        assert {"token", "home_language", "visits", "score"} <= found
        assert "person_id" not in found
        return
    assert betrayals == []


@pytest.mark.parametrize("field", ["person_id", "home_language"])
def test_a_refused_submission_leaves_no_value_on_disk_either(fresh_databases, tmp_path, field):
    master = random_master()
    seeded = seed_minimal(fresh_databases.url(), master, [agreement_document("refused")])
    records = distinctive_records(20)
    records[-1]["score"] = "not a number"
    with fresh_app(seeded, tmp_path / "var") as (api, _engine):
        r = api.post(
            URL, as_="district-sis", content=to_csv(records), headers={"Content-Type": "text/csv"}
        )
        assert r.status_code == 422
        assert records[0][field] not in r.text
    blobs = (
        {str(p): p.read_bytes() for p in sqlite_files(seeded.url)} if BACKEND != "postgres" else {}
    )
    for path in (tmp_path / "var").rglob("*"):
        if path.is_file():
            blobs[str(path)] = path.read_bytes()
    assert not [w for w, b in blobs.items() for r in records if r[field].encode() in b]
