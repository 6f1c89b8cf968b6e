"""Benchmark: ``backbone submit`` of the 1,000,000-row file beside curl sending the same file.

    .venv/bin/python -m bench.bench_submit            # 1,000,000 rows x 12 columns
    .venv/bin/python -m bench.bench_submit --quick    # 100,000 rows, one repetition

It writes the synthetic CSV of :mod:`bench.bench_ingest`, creates a fresh PostgreSQL database
with its partner and agreement, starts a real server, and then, in turns, times

* ``backbone submit FILE --dataset bench_enrollment`` in a fresh process (token, idempotency key
  over the file, one streamed request since the file is under ``--resumable-above``, the
  receipt; no gzip, since the service is on this machine: ``--compress auto``), each run
  replacing the previous one so that its Idempotency-Key is new and it stores;
* what a cron job with curl does: ``curl`` for a token, then ``curl --data-binary @FILE -H
  'Content-Type: text/csv'`` to the submissions endpoint (one streamed request, no compression,
  no retry), timed from the first curl's start to the receipt;
* for information, ``backbone submit --compress always`` (gzip on the way, as to a remote
  service) and ``--resumable-above 0`` (the tus upload), once each per round.

It prints the medians and the ratio (target: at most 1.1x curl).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_ingest import DATASET, DEFAULT_PG, fresh_database, seed, server, write_csv

BIN = Path(sys.executable).parent


def run_submit(
    base: str, creds: dict[str, str], path: Path, replaces: str | None, extra: list[str]
) -> tuple[float, dict[str, object]]:
    command = [str(BIN / "backbone"), "submit", str(path), "--dataset", DATASET, *extra]
    if replaces:
        command += ["--replaces", replaces]
    env = {
        **os.environ,
        "BACKBONE_URL": base,
        "BACKBONE_CLIENT_ID": creds["client_id"],
        "BACKBONE_CLIENT_SECRET": creds["client_secret"],
    }
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"backbone submit failed ({done.returncode}): {done.stderr[-800:]}")
    return elapsed, json.loads(done.stdout)


def run_curl(
    base: str, creds: dict[str, str], path: Path, replaces: str | None = None
) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    got = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-u", f"{creds['client_id']}:{creds['client_secret']}",
         "-d", "grant_type=client_credentials", f"{base}/oauth/token"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if got.returncode != 0:
        raise RuntimeError(f"curl token failed: {got.stdout[-300:]} {got.stderr[-300:]}")
    token = json.loads(got.stdout)["access_token"]
    query = f"?replaces={replaces}" if replaces else ""
    done = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "--data-binary", f"@{path}",
         "-H", "Content-Type: text/csv", "-H", f"Authorization: Bearer {token}",
         f"{base}/v1/datasets/{DATASET}/submissions{query}"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"curl failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    return elapsed, json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, one repetition")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres", default=os.environ.get("BACKBONE_BENCH_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument(
        "--submit-arg", action="append", default=[], help="an extra `backbone submit` option"
    )
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else args.rows
    repeat = 1 if args.quick else args.repeat
    master_raw = os.urandom(32)
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        work = Path(tmp)
        csv_path = work / "records.csv"
        print(f"writing {rows:,} rows ...", flush=True)
        write_csv(csv_path, rows)
        size = csv_path.stat().st_size
        with fresh_database(args.postgres) as url:
            creds = seed(url, master_raw)
            with server(url, master_raw, work / "var") as (base, _pid):
                warm = work / "warm.csv"
                write_csv(warm, 10_000, seed=1)
                run_curl(base, creds, warm)
                ours: list[float] = []
                theirs: list[float] = []
                gzipped: list[float] = []
                resumable: list[float] = []
                previous: str | None = None
                for i in range(repeat):
                    # Each run replaces the last one stored, curl's as well, so that every run
                    # does the same work on the service.
                    elapsed_curl, receipt = run_curl(base, creds, csv_path, previous)
                    assert receipt["row_count"] == rows
                    theirs.append(elapsed_curl)
                    elapsed, receipt = run_submit(
                        base, creds, csv_path, str(receipt["id"]), args.submit_arg
                    )
                    assert receipt["row_count"] == rows
                    ours.append(elapsed)
                    elapsed_gz, receipt = run_submit(
                        base, creds, csv_path, str(receipt["id"]), ["--compress", "always"]
                    )
                    gzipped.append(elapsed_gz)
                    elapsed_tus, receipt = run_submit(
                        base,
                        creds,
                        csv_path,
                        str(receipt["id"]),
                        ["--compress", "always", "--resumable-above", "0"],
                    )
                    resumable.append(elapsed_tus)
                    previous = str(receipt["id"])
                    print(
                        f"  run {i + 1}: backbone submit {elapsed:.2f} s, curl {elapsed_curl:.2f} s"
                        f" ({elapsed / elapsed_curl:.2f}x); gzip {elapsed_gz:.2f} s,"
                        f" gzip + tus {elapsed_tus:.2f} s",
                        flush=True,
                    )
    a, b = statistics.median(ours), statistics.median(theirs)
    print()
    print(f"file: {rows:,} rows, {size / 1e6:.1f} MB CSV; median of {repeat}")
    print(f"backbone submit (one streamed request, receipt):    {a:.2f} s")
    print(f"curl: a token, then --data-binary (one request):    {b:.2f} s")
    print(f"ratio: {a / b:.2f}x (target <= 1.10x)")
    g, t = statistics.median(gzipped), statistics.median(resumable)
    print(f"for information: --compress always {g:.2f} s ({g / b:.2f}x),")
    print(f"  --compress always --resumable-above 0 (tus) {t:.2f} s ({t / b:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
