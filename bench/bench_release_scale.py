"""Benchmark: releases at the scale of a state, on PostgreSQL, computed by ``backbone worker``.

    .venv/bin/python -m bench.bench_release_scale                  # 20,000,000 records
    .venv/bin/python -m bench.bench_release_scale --records 2000000   # or --quick: 1,000,000
    .venv/bin/python -m bench.bench_release_scale --concurrent 10  # ten releases at once
    .venv/bin/python -m bench.bench_release_scale --only differential_privacy  # one release

It creates a fresh PostgreSQL database with four partners (``--partners``), the backbone and
their agreement for one kindergarten-readiness dataset of ten school years (40 neighborhoods, 7
race/ethnicity categories), provided by the first partner and submitted to by every one; starts
the API (``uvicorn api.main:app``) and one job worker (``backbone worker``); and pushes the
records over HTTP: each school year's children split evenly over the partners, one submission
per partner and school year (40 submissions; the total is ``--records`` whatever the number of
partners). Then, in the same run:

* a suppressed release and a differentially private release of the readiness rate by school
  year x neighborhood (with every margin), each requested over HTTP and followed to the end of
  its job: its time, the peak memory of the worker and the processes under it while it computes
  (each job runs in a process of its own, ``BACKBONE_JOB_ISOLATION=process``; proportional set
  sizes, sampled every 20 ms) and their memory after it, beside their idle memory before the
  first;
* the comparison: polars computing the same unprotected counts (distinct children, ready and
  all, per cell and margin) from a plain Parquet file of the same records, in a process of its
  own, with its time and peak memory.

Targets (issue 15): peak worker memory under 2 GiB, memory after within 10% of idle, release
time at most 3x the plain polars time. ``--concurrent N`` instead requests N releases of
different indicators at once (two workers), beside the same N requested one after another.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from bench.bench_ingest import DEFAULT_PG, fresh_database
from bench.common import client_token
from demo.initiative import NEIGHBORHOODS, RACE_ETHNICITY

DATASET = "scale_readiness"
YEARS = [f"{y}-{(y + 1) % 100:02d}" for y in range(2016, 2026)]
GIB = 1 << 30
TARGET_PEAK = 2 * GIB
TARGET_AFTER = 1.10
TARGET_RATIO = 3.0
ROOT = Path(__file__).resolve().parent.parent


def partners(count: int) -> list[str]:
    return [f"scale-partner-{i + 1}" for i in range(count)]


def agreement_document(orgs: list[str] | None = None) -> dict[str, Any]:
    """The agreement of the partners ``orgs`` with the backbone: one readiness dataset, provided
    by the first and submitted to by every one (each its own share of the children)."""
    orgs = orgs or partners(1)
    fields = [
        {
            "name": "student_id",
            "type": "string",
            "role": "identifier",
            "constraints": {"required": True, "pattern": "[A-Z]{2}[0-9]{8}"},
        },
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
            "constraints": {"required": True, "enum": list(NEIGHBORHOODS)},
        },
        {
            "name": "race_ethnicity",
            "type": "string",
            "role": "dimension",
            "constraints": {"required": True, "enum": list(RACE_ETHNICITY)},
        },
        {
            "name": "ready",
            "type": "boolean",
            "role": "dimension",
            "constraints": {"required": True},
        },
    ]
    return {
        "profile": "backbone-odrl/1",
        "uid": "scale-agreement",
        "title": "Benchmark agreement at the scale of a state",
        "legal_basis": "ferpa-studies",
        "clauses": {
            "purpose": "Benchmarking releases over many records.",
            "scope": "Synthetic records.",
            "duration": "The benchmark run.",
            "data_disclosed": "Synthetic kindergarten readiness records.",
            "destruction": "The database is dropped after the run.",
        },
        "parties": [
            *({"org": o, "role": "assigner"} for o in orgs),
            {"org": "backbone", "role": "assignee"},
        ],
        "term": {"effective": "2015-01-01", "expires": "2099-01-01"},
        "datasets": [
            {
                "name": DATASET,
                "provider": orgs[0],
                "submitters": orgs,
                "primaryKey": ["student_id", "school_year"],
                "period_field": "school_year",
                "fields": fields,
            }
        ],
        "rules": {
            "permission": [
                {
                    "id": "submit",
                    "action": "submit",
                    "target": DATASET,
                    "assignee": orgs,
                },
                {
                    "id": "publish",
                    "action": "publish",
                    "target": DATASET,
                    "assignee": "backbone",
                    "constraint": [
                        {
                            "leftOperand": "purpose",
                            "operator": "isAnyOf",
                            "rightOperand": ["dpv:PublicBenefit"],
                        },
                        {
                            "leftOperand": "recipient",
                            "operator": "isPartOf",
                            "rightOperand": ["backbone", *orgs],
                        },
                        {
                            "leftOperand": "disclosureMethod",
                            "operator": "isAnyOf",
                            "rightOperand": ["suppression", "differential_privacy"],
                        },
                    ],
                },
            ]
        },
        "disclosure": {
            "methods": ["suppression", "differential_privacy"],
            "min_cell_size": 11,
            "privacy": {
                "epsilon_per_release": 1.0,
                "epsilon_per_period": 50.0,
                "period": "school_year",
                "max_contributions": 1,
            },
        },
    }


def indicator(ident: str, dims: list[str], numerator: str | None = "ready") -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": ident,
        "title": f"Benchmark indicator {ident}",
        "unit": "percent" if numerator else "count",
        "purpose": "dpv:PublicBenefit",
        "recipients": ["backbone"],
        "numerator": {"dataset": DATASET, **({"filter": numerator} if numerator else {})},
        "dimensions": dims,
    }
    if "school_year" in dims:
        out["period_dimension"] = "school_year"
    if numerator:
        out["denominator"] = {"dataset": DATASET}
    return out


def seed(url: str, count: int = 1) -> dict[str, dict[str, str]]:
    """Organizations, clients and the agreement of every partner with the backbone, through the
    services the API uses."""
    from bench.common import seed_agreements

    orgs = partners(count)
    return seed_agreements(url, agreement_document(orgs), orgs, "scale")


def period_frame(year_index: int, rows: int) -> pl.DataFrame:
    """One school year's kindergartners: skewed neighborhoods and race/ethnicity, readiness
    depending on the neighborhood; identifiers unique across years."""
    import numpy as np

    rng = np.random.default_rng(20261205 + year_index)
    hood_w = np.random.default_rng(7).lognormal(0.0, 1.0, len(NEIGHBORHOODS))
    hood_w /= hood_w.sum()
    race_w = np.array([0.01, 0.07, 0.22, 0.30, 0.005, 0.34, 0.055])
    hood = rng.choice(len(NEIGHBORHOODS), size=rows, p=hood_w)
    race = rng.choice(len(RACE_ETHNICITY), size=rows, p=race_w / race_w.sum())
    ready = rng.random(rows) < (0.35 + 0.4 * (hood / len(NEIGHBORHOODS)))
    letters = "ABCDEFGHIJ"
    prefix = f"{letters[year_index]}{letters[(year_index * 3) % 10]}"
    return pl.DataFrame(
        {
            "student_id": pl.select(
                pl.format(
                    "{}{}", pl.lit(prefix), pl.int_range(0, rows).cast(pl.String).str.zfill(8)
                )
            ).to_series(),
            "school_year": [YEARS[year_index]] * rows,
            "neighborhood": pl.Series(np.array(NEIGHBORHOODS)[hood]),
            "race_ethnicity": pl.Series(np.array(RACE_ETHNICITY)[race]),
            "ready": pl.Series(ready),
        }
    )


@contextmanager
def processes(url: str, data_dir: Path, workers: int) -> Iterator[tuple[str, list[int]]]:
    """The API (one uvicorn process) and ``workers`` job workers on the same database."""
    from bench.common import free_port

    port = free_port()
    master = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
    env = {
        **os.environ,
        "BACKBONE_DATABASE_URL": url,
        "BACKBONE_MASTER_KEY": master,
        "BACKBONE_DATA_DIR": str(data_dir),
        "BACKBONE_LOG_LEVEL": "WARNING",
        "BACKBONE_ISSUER": f"http://127.0.0.1:{port}",
        "BACKBONE_RELEASE_TIME_QUANTUM": "0",
        "BACKBONE_RELEASE_SYNC_SECONDS": "0",
        "BACKBONE_WRITE_RATE_LIMIT": "100000/minute",
        "BACKBONE_MAX_SUBMISSION_BYTES": str(8 * GIB),
    }
    api = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1"]
    api += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    procs = [
        subprocess.Popen(api, env=env, cwd=ROOT),
    ]
    for _ in range(workers):
        procs.append(
            subprocess.Popen(
                [str(Path(sys.executable).parent / "backbone"), "worker"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError("the API or a worker did not start")
            time.sleep(0.2)
        time.sleep(2)  # the workers connect to the queue
        yield base, [p.pid for p in procs[1:]]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def _push(base: str, token: str, frame: pl.DataFrame, year: str, partner: str) -> None:
    body = frame.write_csv().encode()
    r = httpx.post(
        f"{base}/v1/datasets/{DATASET}/submissions",
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "text/csv",
            "Idempotency-Key": f"scale-{partner}-{year}",
        },
        params={"period": year},
        timeout=3600,
    )
    if r.status_code != 201:
        raise RuntimeError(f"submission refused: {r.status_code} {r.text[:300]}")


def _request(base: str, token: str, ident: str, method: str) -> str:
    """A release request; the job it answers with (or the stored release, then None)."""
    r = httpx.post(
        f"{base}/v1/indicators/{ident}/releases",
        json={"method": method},
        headers={"Authorization": f"Bearer {token}"},
        timeout=3600,
    )
    if r.status_code == 202 and "/v1/jobs/" in r.headers.get("location", ""):
        return r.headers["location"]
    if r.status_code in (200, 201):
        return ""
    raise RuntimeError(f"release refused: {r.status_code} {r.text[:300]}")


def _wait(base: str, token: str, location: str) -> dict[str, Any]:
    while True:
        r = httpx.get(f"{base}{location}", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        r.raise_for_status()
        job = r.json()
        if job["state"] in ("succeeded", "failed"):
            if job["state"] == "failed":
                raise RuntimeError(f"release job failed: {job.get('problem')}")
            return dict(job)
        time.sleep(0.2)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def _tree(pid: int) -> list[int]:
    """The worker and every process under it: the forkserver and the jobs' processes."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(_children(current))
    return out


def _pss(pid: int) -> int:
    """Proportional set size: shared pages (the forkserver's modules in every job process)
    counted once in a sum over processes."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_memory(pid: int) -> int:
    return sum(_pss(p) for p in _tree(pid))


def _release(base: str, token: str, ident: str, method: str, pid: int) -> tuple[float, int, int]:
    """Time, peak memory of the worker and the processes under it while the release is
    computed (sampled every 20 ms), and their memory once it is done."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_memory(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    location = _request(base, token, ident, method)
    if location:
        _wait(base, token, location)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    time.sleep(1)
    return seconds, peak[0], tree_memory(pid)


_POLARS = """
import resource, sys, time
import polars as pl
t = time.perf_counter()
lf = pl.scan_parquet(sys.argv[1])
ready = pl.col("student_id").filter(pl.col("ready")).n_unique().alias("x")
alln = pl.col("student_id").n_unique().alias("n")
for keys in (["school_year", "neighborhood"], ["school_year"], ["neighborhood"]):
    lf.group_by(keys).agg(ready, alln).collect(engine="streaming")
lf.select(ready, alln).collect(engine="streaming")
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def _plain_polars(parquet: str) -> tuple[float, int]:
    done = subprocess.run(
        [sys.executable, "-c", _POLARS, parquet], capture_output=True, text=True, check=True
    )
    seconds, peak = done.stdout.split()
    return float(seconds), int(peak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000_000)
    parser.add_argument("--quick", action="store_true", help="1,000,000 records")
    parser.add_argument("--concurrent", type=int, default=0)
    parser.add_argument(
        "--partners", type=int, default=4, help="partner organizations sharing the records"
    )
    parser.add_argument(
        "--only",
        choices=("suppression", "differential_privacy"),
        help="run one of the two releases (the polars comparison runs either way)",
    )
    parser.add_argument(
        "--postgres", default=os.environ.get("BACKBONE_BENCH_POSTGRES_URL", DEFAULT_PG)
    )
    args = parser.parse_args(argv)
    per_year = (1_000_000 if args.quick else args.records) // len(YEARS)
    with (
        fresh_database(args.postgres) as url,
        tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp,
    ):
        creds = seed(url, args.partners)
        orgs = partners(args.partners)
        workers = 2 if args.concurrent else 1
        with processes(url, Path(tmp) / "var", workers) as (base, pids):
            tokens = {o: client_token(base, creds[f"sis-{o}"]) for o in orgs}
            started = time.perf_counter()
            share = -(-per_year // len(orgs))
            for i, year in enumerate(YEARS):
                frame = period_frame(i, per_year)
                frame.write_parquet(Path(tmp) / f"records-{i}.parquet")
                # Each partner pushes its share of the year's children (different children).
                for j, org in enumerate(orgs):
                    _push(base, tokens[org], frame.slice(j * share, share), year, org)
                del frame
            loaded = time.perf_counter() - started
            print(
                f"PostgreSQL, {per_year * len(YEARS):,} records from {len(orgs)} partner(s)"
                f" in {len(YEARS) * len(orgs)} submissions (pushed in {loaded:.0f} s);"
                f" {workers} worker(s)",
                flush=True,
            )
            manager = client_token(base, creds["mgr"])
            if args.concurrent:
                return _concurrent(base, manager, args.concurrent)
            made = httpx.post(
                f"{base}/v1/indicators",
                json=indicator("scale-readiness", ["school_year", "neighborhood"]),
                headers={"Authorization": f"Bearer {manager}"},
                timeout=60,
            )
            made.raise_for_status()
            pid = pids[0]
            idle = tree_memory(pid)
            plain, plain_peak = _plain_polars(str(Path(tmp) / "records-*.parquet"))
            print(f"worker idle: {idle / 2**20:,.0f} MiB")
            print(
                f"plain polars over Parquet (the same counts, unprotected): {plain:.2f} s,"
                f" peak {plain_peak / 2**20:,.0f} MiB"
            )
            ok = True
            for method in [args.only] if args.only else ["suppression", "differential_privacy"]:
                seconds, peak, after = _release(base, manager, "scale-readiness", method, pid)
                ratio = seconds / plain
                met = peak < TARGET_PEAK and after <= idle * TARGET_AFTER and ratio <= TARGET_RATIO
                ok &= met
                print(
                    f"{method:<21} {seconds:7.2f} s ({ratio:.1f}x polars), worker peak"
                    f" {peak / 2**20:,.0f} MiB, after {after / 2**20:,.0f} MiB"
                    f" ({after / idle:.2f}x idle){'' if met else '  <- target missed'}"
                )
            print(
                f"targets: peak < {TARGET_PEAK / 2**20:,.0f} MiB, after <= {TARGET_AFTER:.2f}x idle,"
                f" time <= {TARGET_RATIO:.0f}x polars: {'met' if ok else 'NOT met'}"
            )
    return 0


def _concurrent(base: str, token: str, count: int) -> int:
    shapes = [
        (["school_year", "neighborhood"], "ready"),
        (["school_year", "race_ethnicity"], "ready"),
        (["neighborhood"], "ready"),
        (["race_ethnicity"], "ready"),
        (["school_year"], "ready"),
        (["school_year", "neighborhood"], None),
        (["school_year", "race_ethnicity"], None),
        (["neighborhood"], None),
        (["race_ethnicity"], None),
        (["school_year"], None),
    ]
    idents = []
    for i in range(count):
        dims, numerator = shapes[i % len(shapes)]
        for run in ("one", "all"):
            ident = f"scale-{run}-{i}"
            made = httpx.post(
                f"{base}/v1/indicators",
                json=indicator(ident, dims, numerator),
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            if made.status_code != 201:
                raise RuntimeError(f"indicator refused: {made.status_code} {made.text[:400]}")
        idents.append(i)
    # Differential privacy: no joint audit, so each release costs the same alone or together.
    started = time.perf_counter()
    for i in idents:
        location = _request(base, token, f"scale-one-{i}", "differential_privacy")
        if location:
            _wait(base, token, location)
    one_by_one = time.perf_counter() - started
    started = time.perf_counter()
    locations = [_request(base, token, f"scale-all-{i}", "differential_privacy") for i in idents]
    for location in locations:
        if location:
            _wait(base, token, location)
    together = time.perf_counter() - started
    print(f"{count} releases one after another: {one_by_one:.1f} s")
    print(
        f"{count} releases requested at once:   {together:.1f} s"
        f" ({together / one_by_one:.2f}x; target <= 1.00x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
