"""Benchmark the audit log: its cost on a small submission, offline verification of a
1,000,000-event export, and proofs on a 1,000,000-event log.

    .venv/bin/python -m bench.bench_audit            # the issue's sizes
    .venv/bin/python -m bench.bench_audit --quick    # smaller, for a smoke run

1. Submission overhead: a 3-row CSV submission through the real service path
   (``records.service.submit`` + commit, on SQLite with synchronous=FULL), with the audit write as
   it is vs. the same path with ``record`` replaced by a no-op in this process; runs interleaved,
   medians compared. Target: at most +10%.
2. Offline verification: a realistic signed export of 1,000,000 events is generated, then
   ``audit.verify.verify_export`` (what ``backbone audit verify`` runs) is timed. Compared with the
   10 s budget, and with the floor of merely reading and hashing every line.
3. Proofs on a 1,000,000-event log in SQLite: inclusion and consistency proofs from the stored
   subtree hashes, compared with recomputing them from every leaf hash.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

TARGET_OVERHEAD = 0.10
TARGET_VERIFY_SECONDS = 10.0


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# --- 1. the cost of auditing a small submission -----------------------------------------------


def bench_submission(tmp: Path, rounds: int) -> float:
    from sqlalchemy.orm import Session

    import records.service as records
    from agreements.service import PolicyCache
    from core.clock import utcnow
    from core.context import RequestContext
    from core.db import make_engine, make_session_factory
    from core.ids import new_id
    from core.keys import MasterKey
    from demo.generator import generate
    from demo.seed import seed
    from migrations.commands import upgrade
    from policy.model import Principal
    from records.intake import IntakeLimits

    url = f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    master = MasterKey(bytes(range(32)))
    with sessions() as s:
        seed(s, master, tmp / "credentials.json", generate(births_per_year=120))
        s.commit()
    cache = PolicyCache()
    principal = Principal(
        "district-sis", "district", "partner", frozenset({"records:write", "submissions:read"})
    )
    limits = IntakeLimits(max_bytes=1 << 20)
    # records.service imported record by name: replace that name, in this process only.
    namespace = vars(records)
    real_record = namespace["record"]
    counter = iter(range(10**9))
    record_times: list[float] = []

    def timed_record(session: Session, ctx: Any, rec: Any) -> Any:
        session.flush()  # the submission's own pending rows are not the audit write's cost
        started = time.perf_counter()
        try:
            return real_record(session, ctx, rec)
        finally:
            record_times.append(time.perf_counter() - started)

    def noop_record(session: Session, ctx: Any, rec: Any) -> Any:
        return SimpleNamespace(idx=None)

    def one(audited: bool) -> float:
        n = next(counter)
        body = (
            "student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"
            f"BB{n:08d},2025-26,Ashland,Asian,true,81\n"
            f"BC{n:08d},2025-26,Ashland,White,false,52\n"
            f"BD{n:08d},2025-26,Central,Hispanic or Latino,true,77\n"
        ).encode()
        path = tmp / "body.csv"
        path.write_bytes(body)
        req = records.SubmissionRequest(
            dataset="kindergarten_readiness",
            body=path,
            content_type="text/csv",
            content_encoding=None,
            body_sha256=hashlib.sha256(body).hexdigest(),
            limits=limits,
            scratch=tmp / "segment.sealed",
        )
        namespace["record"] = timed_record if audited else noop_record
        try:
            started = time.perf_counter()
            with sessions() as session:
                ctx = RequestContext(new_id("bench"), utcnow(), principal)
                records.submit(session, ctx, master, cache.get(session), req)
                session.commit()
            return time.perf_counter() - started
        finally:
            namespace["record"] = real_record

    for i in range(30):  # warm up both paths
        one(i % 2 == 0)
    record_times.clear()
    with_audit: list[float] = []
    without: list[float] = []
    for i in range(rounds):
        # Interleave (ABBA) so drift in disk or cache state hits both equally.
        order = (True, False) if i % 2 == 0 else (False, True)
        for audited in order:
            (with_audit if audited else without).append(one(audited))
    engine.dispose()
    a, b = statistics.median(with_audit), statistics.median(without)
    overhead = a / b - 1
    paired = statistics.median(x - y for x, y in zip(with_audit, without, strict=True))
    own = statistics.median(record_times)
    print("1. audit cost on a small submission (3-row CSV, service path + commit, SQLite)")
    print(f"   with the audit write:     median {_fmt(a)}  (p90 {_fmt(_p90(with_audit))})")
    print(f"   audit write made a no-op: median {_fmt(b)}  (p90 {_fmt(_p90(without))})")
    print(
        f"   ratio {a / b:.3f}: audit logging adds {overhead * 100:+.1f}% "
        f"(target <= +{TARGET_OVERHEAD * 100:.0f}%) over {rounds} runs each"
    )
    print(
        f"   paired difference (median of back-to-back runs): {_fmt(paired)} = "
        f"{paired / b * 100:+.1f}%; record() itself: median {_fmt(own)} = "
        f"{own / b * 100:.1f}% of a submission"
    )
    return overhead


def _p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9)]


# --- 2. verifying a large export offline -------------------------------------------------------


def _synthetic_entries(n: int, seed: int = 1) -> Any:
    """Realistic entries: the mix of actions, decisions, rules and counts the service writes."""
    from audit.service import format_time

    rng = random.Random(seed)
    orgs = [
        ("district", "district-sis"),
        ("health", "health-vitals"),
        ("early-learning", "elnet-enrollment"),
        ("backbone", "backbone-manager"),
        ("auditor", "county-auditor"),
    ]
    actions = [
        "submission.create",
        "oauth.token",
        "release.read",
        "release.create",
        "submission.read",
        "audit.read",
        "agreement.approve",
    ]
    agreements = ["district-early-learning-outcomes", "health-births", "elnet-prek-enrollment"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        org, client = orgs[rng.randrange(5)]
        action = actions[rng.randrange(7)]
        agreement = agreements[rng.randrange(3)]
        deny = rng.random() < 0.05
        yield {
            "index": i,
            "at": format_time(start + timedelta(microseconds=i * 31_536_000)),
            "request_id": f"{rng.getrandbits(128):032x}",
            "organization": org,
            "client": client,
            "action": action,
            "resource_type": "submission",
            "resource_id": f"sub_{rng.getrandbits(100):026x}",
            "agreements": [{"agreement": agreement, "version": 1 + i % 3}],
            "purpose": "dpv:PublicBenefit",
            "decision": "deny" if deny else "permit",
            "rules": [] if deny else [{"agreement": agreement, "rule": "p-submit", "version": 1}],
            "reasons": [
                {
                    "agreement": agreement,
                    "version": 1,
                    "rule": "p-submit",
                    "dataset": "kindergarten_readiness",
                    "left_operand": "purpose",
                    "operator": "isA",
                    "expected": "dpv:PublicBenefit",
                    "actual": "dpv:Marketing",
                }
            ]
            if deny
            else [],
            "counts": {"rows": rng.randint(1, 20000)},
            "outcome": "denied" if deny else "succeeded",
            "detail": "dataset kindergarten_readiness",
        }


def make_export(path: Path, n: int) -> tuple[Any, float]:
    """Write a signed NDJSON export of n events; return (its checkpoint, seconds taken)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit.canonical import canonical_bytes, ndjson_line
    from audit.merkle import Frontier, leaf_hash
    from audit.note import LogSigner, open_checkpoint

    started = time.perf_counter()
    frontier = Frontier()
    with path.open("wb") as fh:
        batch = []
        for entry in _synthetic_entries(n):
            data = canonical_bytes(entry)
            leaf = leaf_hash(data)
            frontier.append(leaf)
            batch.append(ndjson_line(data, leaf))
            if len(batch) == 10_000:
                fh.write(b"".join(batch))
                batch.clear()
        fh.write(b"".join(batch))
    signer = LogSigner(Ed25519PrivateKey.generate(), "bench.example/audit")
    note, _ = signer.sign(n, frontier.root(), datetime.now(UTC))
    return open_checkpoint(note, signer.verifier), time.perf_counter() - started


def bench_verify(tmp: Path, n: int) -> float:
    from audit.verify import verify_export

    path = tmp / "export.ndjson"
    checkpoint, made = make_export(path, n)
    size_mb = path.stat().st_size / 1e6
    gc.collect()
    started = time.perf_counter()
    with path.open("rb") as fh:
        for line in fh:
            hashlib.sha256(line).digest()
    floor = time.perf_counter() - started
    gc.collect()
    started = time.perf_counter()
    report = verify_export(path, [checkpoint])
    seconds = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"the generated export did not verify: {report.as_dict()}")
    print(f"2. offline verification of a signed export of {n:,} events ({size_mb:,.0f} MB NDJSON)")
    print(f"   generated and signed in {made:.1f} s")
    print(
        f"   verify: {seconds:.2f} s = {n / seconds:,.0f} events/s; "
        f"{seconds / TARGET_VERIFY_SECONDS:.2f} of the {TARGET_VERIFY_SECONDS:.0f} s budget "
        f"(scaled to 1,000,000 events: {seconds * 1_000_000 / n:.2f} s)"
    )
    print(
        f"   floor (read + one SHA-256 per line, no tree): {floor:.2f} s; "
        f"verify / floor = {seconds / floor:.2f}"
    )
    path.unlink()
    csv_n = min(n, 100_000)
    csv_path = tmp / "export.csv"
    csv_checkpoint = make_csv_export(csv_path, csv_n)
    started = time.perf_counter()
    report = verify_export(csv_path, [csv_checkpoint])
    csv_seconds = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"the generated CSV export did not verify: {report.as_dict()}")
    print(
        f"   CSV export of {csv_n:,} events: {csv_seconds:.2f} s = {csv_n / csv_seconds:,.0f} "
        f"events/s ({(csv_n / csv_seconds) / (n / seconds):.2f}x the NDJSON rate: its "
        "canonical JSON is reassembled from the cells)"
    )
    csv_path.unlink()
    return seconds * 1_000_000 / n


def make_csv_export(path: Path, n: int) -> Any:
    import csv

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit.canonical import EXPORT_COLUMNS, canonical_bytes, csv_row
    from audit.merkle import Frontier, leaf_hash
    from audit.note import LogSigner, open_checkpoint

    frontier = Frontier()
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        for entry in _synthetic_entries(n):
            leaf = leaf_hash(canonical_bytes(entry))
            frontier.append(leaf)
            writer.writerow(csv_row(entry, leaf))
    signer = LogSigner(Ed25519PrivateKey.generate(), "bench.example/audit")
    note, _ = signer.sign(n, frontier.root(), datetime.now(UTC))
    return open_checkpoint(note, signer.verifier)


# --- 3. proofs on a large stored log ----------------------------------------------------------


def bench_proofs(tmp: Path, n: int) -> float:
    from sqlalchemy import insert, select, update

    from audit import merkle
    from audit.models import STORED_LEVEL, AuditEvent, AuditHead, AuditNode
    from audit.proofs import StoredTree
    from core.db import make_engine, make_session_factory
    from migrations.commands import upgrade

    url = f"sqlite:///{tmp / 'proofs.db'}"
    upgrade(url)
    engine = make_engine(url)
    started = time.perf_counter()
    frontier = merkle.Frontier()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        rows: list[dict[str, Any]] = []
        nodes: list[dict[str, Any]] = []
        for i in range(n):
            leaf = merkle.leaf_hash(b"event %d" % i)
            for level, index, h in frontier.append(leaf):
                if level >= STORED_LEVEL:
                    nodes.append({"level": level, "idx": index, "hash": h})
            rows.append(
                {
                    "idx": i,
                    "at": at,
                    "action": "bench",
                    "agreements": [],
                    "rules": [],
                    "reasons": [],
                    "counts": {},
                    "outcome": "succeeded",
                    "leaf_hash": leaf,
                }
            )
            if len(rows) == 50_000:
                conn.execute(insert(AuditEvent), rows)
                rows.clear()
        if rows:
            conn.execute(insert(AuditEvent), rows)
        conn.execute(insert(AuditNode), nodes)
        conn.execute(
            update(AuditHead).where(AuditHead.id == 1).values(size=n, frontier=frontier.to_bytes())
        )
    built = time.perf_counter() - started
    root = frontier.root()
    rng = random.Random(3)
    sessions = make_session_factory(engine)
    inclusion: list[float] = []
    consistency: list[float] = []
    with sessions() as s:
        tree = StoredTree(s)
        for _ in range(200):
            index = rng.randrange(n)
            t = time.perf_counter()
            proof = tree.inclusion_proof(index, n)
            inclusion.append(time.perf_counter() - t)
            assert merkle.verify_inclusion(
                index, n, tree.leaf_hashes(index, index + 1)[0], proof, root
            )
        for _ in range(200):
            old = rng.randrange(1, n)
            t = time.perf_counter()
            tree.consistency_proof(old, n)
            consistency.append(time.perf_counter() - t)
        t = time.perf_counter()
        leaves = [
            bytes(h) for h in s.scalars(select(AuditEvent.leaf_hash).order_by(AuditEvent.idx))
        ]
        naive_proof = merkle.inclusion_proof(leaves, n // 3)
        naive = time.perf_counter() - t
        assert naive_proof == tree.inclusion_proof(n // 3, n)
    engine.dispose()
    worst = max(max(inclusion), max(consistency))
    print(f"3. proofs on a stored log of {n:,} events (SQLite; built in {built:.0f} s)")
    print(
        f"   inclusion:   median {_fmt(statistics.median(inclusion))}, max {_fmt(max(inclusion))}"
    )
    print(
        f"   consistency: median {_fmt(statistics.median(consistency))}, "
        f"max {_fmt(max(consistency))}"
    )
    print(
        f"   recomputing one proof from every leaf hash instead: {_fmt(naive)} "
        f"({naive / statistics.median(inclusion):,.0f}x the stored-subtree proof)"
    )
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--events", type=int, help="events to export and verify")
    parser.add_argument("--rounds", type=int, help="submissions of each kind")
    parser.add_argument("--skip-proofs", action="store_true")
    args = parser.parse_args(argv)
    events = args.events or (50_000 if args.quick else 1_000_000)
    rounds = args.rounds or (60 if args.quick else 500)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as name:
        tmp = Path(name)
        overhead = bench_submission(tmp, rounds)
        verify_seconds = bench_verify(tmp, events)
        proof_seconds = 0.0 if args.skip_proofs else bench_proofs(tmp, events)
    ok = overhead <= TARGET_OVERHEAD and verify_seconds < TARGET_VERIFY_SECONDS
    ok = ok and proof_seconds < 1.0
    print(
        "summary:",
        json.dumps(
            {
                "submission_overhead": round(overhead, 4),
                "verify_seconds_per_1m": round(verify_seconds, 2),
                "worst_proof_seconds": round(proof_seconds, 4),
                "targets_met": ok,
            }
        ),
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
