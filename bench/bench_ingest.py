"""Benchmark: record ingest over HTTP against PostgreSQL's own ``COPY`` of the same file.

    .venv/bin/python -m bench.bench_ingest            # 1,000,000 rows x 12 columns
    .venv/bin/python -m bench.bench_ingest --quick    # 100,000 rows

It writes a synthetic CSV (one identifier, a date, dimensions, measures), creates a fresh
PostgreSQL database with the schema, a partner, a backbone and an agreement for a 12-field
dataset, starts a real server process (uvicorn) on it, and then, in the same run and in turns:

* pushes the file over HTTP (streamed, ``Content-Type: text/csv``) and times it from the first
  byte sent to the receipt (201), which Backbone sends after validation, pseudonymization,
  encryption and commit;
* loads the same file with ``COPY ... FROM STDIN (FORMAT csv)`` through psycopg into a plain
  table with the matching SQL types (and, for reference, into an all-text table), timed from the
  start of the COPY to its commit.

It prints rows per second, both times and their ratio (target: at most 2x the typed COPY), and
the server's peak resident memory (``VmHWM``; target: under 1 GiB). Each side runs ``--repeat``
times after a warm-up; the median is reported.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl

from bench.common import client_token

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HOODS = [f"Neighborhood {i:02d}" for i in range(40)]
YEARS = ["2021-22", "2022-23", "2023-24", "2024-25", "2025-26"]
RACE = [
    "American Indian or Alaska Native",
    "Asian",
    "Black or African American",
    "Hispanic or Latino",
    "Native Hawaiian or Other Pacific Islander",
    "White",
    "Two or More Races",
]
PROGRAMS = ["Head Start", "State Pre-K", "Community-based", "None"]
DATASET = "bench_enrollment"

FIELDS: list[dict[str, Any]] = [
    {
        "name": "person_id",
        "type": "string",
        "role": "identifier",
        "constraints": {"required": True, "pattern": "[A-Z]{2}[0-9]{8}"},
    },
    {"name": "birth_date", "type": "date", "role": "attribute", "constraints": {"required": True}},
    {
        "name": "school_year",
        "type": "string",
        "role": "dimension",
        "constraints": {"required": True, "enum": YEARS},
    },
    {
        "name": "neighborhood",
        "type": "string",
        "role": "dimension",
        "geography": "neighborhood",
        "constraints": {"required": True, "enum": HOODS},
    },
    {
        "name": "race_ethnicity",
        "type": "string",
        "role": "dimension",
        "constraints": {"enum": RACE},
    },
    {
        "name": "sex",
        "type": "string",
        "role": "dimension",
        "constraints": {"enum": ["F", "M", "X"]},
    },
    {
        "name": "grade",
        "type": "integer",
        "role": "dimension",
        "constraints": {"enum": list(range(-1, 13))},
    },
    {
        "name": "score",
        "type": "number",
        "role": "measure",
        "constraints": {"minimum": 0, "maximum": 100},
    },
    {"name": "ready", "type": "boolean", "role": "measure"},
    {
        "name": "days_enrolled",
        "type": "integer",
        "role": "measure",
        "constraints": {"minimum": 0, "maximum": 366},
    },
    {
        "name": "days_absent",
        "type": "integer",
        "role": "measure",
        "constraints": {"minimum": 0, "maximum": 366},
    },
    {"name": "program", "type": "string", "role": "attribute", "constraints": {"enum": PROGRAMS}},
]
SQL_TYPES = {
    "string": "text",
    "date": "date",
    "integer": "integer",
    "number": "double precision",
    "boolean": "boolean",
}


def agreement_document() -> dict[str, Any]:
    return {
        "profile": "backbone-odrl/1",
        "uid": "bench-agreement",
        "title": "Benchmark agreement",
        "legal_basis": "ferpa-studies",
        "clauses": {
            "purpose": "Benchmarking record ingest.",
            "scope": "Synthetic records.",
            "duration": "The benchmark run.",
            "data_disclosed": "Synthetic enrollment records.",
            "destruction": "The database is dropped after the run.",
        },
        "parties": [
            {"org": "bench-partner", "role": "assigner"},
            {"org": "backbone", "role": "assignee"},
        ],
        "term": {"effective": "2020-01-01", "expires": "2099-01-01"},
        "datasets": [
            {
                "name": DATASET,
                "provider": "bench-partner",
                "primaryKey": ["person_id", "school_year"],
                "period_field": "school_year",
                "fields": FIELDS,
            }
        ],
        "rules": {
            "permission": [
                {"id": "submit", "action": "submit", "target": DATASET, "assignee": "bench-partner"}
            ]
        },
        "disclosure": {"min_cell_size": 11},
    }


def write_csv(path: Path, rows: int, seed: int = 20261123) -> None:
    """A realistic file: unique identifiers, skewed categories, a few empty optional values."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(26 * 26 * 10**8, size=rows, replace=False)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    prefix = np.char.add(letters[(ids // 10**8) // 26], letters[(ids // 10**8) % 26])
    person = np.char.add(prefix, np.char.zfill((ids % 10**8).astype(str), 8))
    births = np.datetime64("2014-01-01") + rng.integers(0, 5 * 365, rows).astype("timedelta64[D]")
    frame = pl.DataFrame(
        {
            "person_id": person,
            "birth_date": births.astype(str),
            "school_year": rng.choice(YEARS, rows),
            "neighborhood": rng.choice(HOODS, rows, p=_skewed(len(HOODS), rng)),
            "race_ethnicity": np.where(
                rng.random(rows) < 0.02, "", rng.choice(RACE, rows, p=_skewed(len(RACE), rng))
            ),
            "sex": rng.choice(["F", "M", "X"], rows, p=[0.49, 0.49, 0.02]),
            "grade": rng.integers(-1, 13, rows),
            "score": np.round(np.clip(rng.normal(62, 14, rows), 0, 100), 1),
            "ready": rng.choice(["true", "false"], rows),
            "days_enrolled": rng.integers(120, 181, rows),
            "days_absent": rng.integers(0, 40, rows),
            "program": rng.choice(PROGRAMS, rows),
        }
    )
    frame.write_csv(path)


def _skewed(n: int, rng: np.random.Generator) -> np.ndarray:
    weights = rng.pareto(1.5, n) + 0.05
    return weights / weights.sum()


# -- set-up ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"bench_ingest_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(url: str, master_raw: bytes) -> dict[str, str]:
    """Organizations, clients and the agreement, through the services the API uses."""
    from bench.common import seed_agreement

    creds: dict[str, str] = seed_agreement(url, agreement_document(), "bench-partner", "bench")[
        "sis"
    ]
    return creds


@contextmanager
def server(url: str, master_raw: bytes, data_dir: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {
        **os.environ,
        "BACKBONE_DATABASE_URL": url,
        "BACKBONE_MASTER_KEY": base64.urlsafe_b64encode(master_raw).decode().rstrip("="),
        "BACKBONE_DATA_DIR": str(data_dir),
        "BACKBONE_LOG_LEVEL": "WARNING",
        "BACKBONE_ISSUER": f"http://127.0.0.1:{port}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def peak_rss(pid: int, field: str = "VmHWM") -> int:
    """The process's peak (VmHWM) or current (VmRSS) resident set size in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


# -- the two sides -----------------------------------------------------------------------------


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def push(base: str, token: str, path: Path) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    r = httpx.post(
        f"{base}/v1/datasets/{DATASET}/submissions",
        content=_chunks(path),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    if r.status_code != 201:
        raise RuntimeError(f"ingest failed: {r.status_code} {r.text[:500]}")
    return elapsed, r.json()


def copy(pg_url: str, path: Path, typed: bool) -> float:
    import psycopg

    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
    table = f"copy_{'typed' if typed else 'text'}_{uuid.uuid4().hex[:8]}"
    columns = ", ".join(f"{f['name']} {SQL_TYPES[f['type']] if typed else 'text'}" for f in FIELDS)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} ({columns})")
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)") as cp,
        ):
            for chunk in _chunks(path):
                cp.write(chunk)
        elapsed = time.perf_counter() - started
        conn.execute(f"DROP TABLE {table}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, one repetition")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres", default=os.environ.get("BACKBONE_BENCH_POSTGRES_URL", DEFAULT_PG)
    )
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else args.rows
    repeat = 1 if args.quick else args.repeat
    master_raw = os.urandom(32)

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        csv_path = work / "records.csv"
        warm_path = work / "warm.csv"
        print(f"writing {rows:,} rows x {len(FIELDS)} columns ...", flush=True)
        write_csv(csv_path, rows)
        write_csv(warm_path, 10_000, seed=1)
        size = csv_path.stat().st_size
        with fresh_database(args.postgres) as url:
            creds = seed(url, master_raw)
            with server(url, master_raw, work / "var") as (base, pid):
                token = client_token(base, creds)
                idle = peak_rss(pid, "VmRSS")
                push(base, token, warm_path)
                copy(url, warm_path, typed=True)
                ingest_times, copy_typed, copy_text = [], [], []
                for i in range(repeat):
                    elapsed, receipt = push(base, token, csv_path)
                    if receipt["row_count"] != rows:
                        raise RuntimeError("the receipt does not count every row")
                    ingest_times.append(elapsed)
                    copy_typed.append(copy(url, csv_path, typed=True))
                    copy_text.append(copy(url, csv_path, typed=False))
                    print(
                        f"  run {i + 1}: backbone {elapsed:.2f} s, COPY typed "
                        f"{copy_typed[-1]:.2f} s, COPY text {copy_text[-1]:.2f} s",
                        flush=True,
                    )
                rss = peak_rss(pid)
    ingest = statistics.median(ingest_times)
    typed = statistics.median(copy_typed)
    text = statistics.median(copy_text)
    ratio = ingest / typed
    print()
    print(
        f"file: {rows:,} rows, {len(FIELDS)} columns, {size / 1e6:.1f} MB CSV; median of {repeat}"
    )
    print(
        f"backbone end to end (HTTP, validate, pseudonymize, encrypt, commit): {ingest:.2f} s "
        f"= {rows / ingest:,.0f} rows/s"
    )
    print(f"PostgreSQL COPY into a typed table:  {typed:.2f} s = {rows / typed:,.0f} rows/s")
    print(f"PostgreSQL COPY into a text table:   {text:.2f} s = {rows / text:,.0f} rows/s")
    print(
        f"ratio backbone / COPY typed: {ratio:.2f}x (target <= 2.00x)  [vs text: {ingest / text:.2f}x]"
    )
    print(
        f"peak server memory (VmHWM): {rss / 2**20:.0f} MiB (target < 1024 MiB); "
        f"{idle / 2**20:.0f} MiB when idle before the first upload"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
