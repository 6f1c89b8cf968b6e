"""Requests whose cost is not bounded by their size (issue 12): the worst inputs one can build
within the body limits, each answered in well under a second (target: < 1 s), printed beside
the time of an ordinary 1,000-row CSV submission.

* the widest CSV header within the line limit (1 MiB of distinct short column names; a
  quadratic duplicate check took minutes on a tenth of it), and one 1 MiB column name;
* the deepest JSON body within the JSON body limit (1 MiB of ``[``), the widest one, a deeply
  nested NDJSON record (polars' reader crashed the process on it), the deepest YAML agreement.

Each request runs against a real server process (one worker) on a fresh database; each figure is
the median of three requests, with its status.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import statistics
import string
import sys
import time

from bench.common import database, server, token

LIMIT = 1 << 20  # BACKBONE_MAX_BODY_BYTES and the CSV line limit, by default
TARGET_SECONDS = 1.0
HEADER = "student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"


def _names() -> itertools.chain[str]:
    alphabet = string.ascii_lowercase + string.digits
    return itertools.chain.from_iterable(
        ("".join(p) for p in itertools.product(alphabet, repeat=n)) for n in itertools.count(1)
    )


def widest_header() -> bytes:
    """Distinct column names, shortest first, as many as fit in one line under the limit."""
    out, size = [], 0
    for name in _names():
        if size + len(name) + 1 >= LIMIT - 1:
            break
        out.append(name)
        size += len(name) + 1
    return (",".join(out) + "\n").encode()


def rows(n: int, prefix: str) -> bytes:
    return (
        HEADER
        + "".join(
            f"{prefix}{i:08d},2025-26,Ashland,Asian,{'true' if i % 2 else 'false'},{i % 101}\n"
            for i in range(n)
        )
    ).encode()


def timed(
    port: int, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, resp.status


def median_of(runs: int, fn: object) -> tuple[float, int]:
    results = [fn(i) for i in range(runs)]  # type: ignore[operator]
    return statistics.median(r[0] for r in results), results[-1][1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="one request of each kind")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else 3
    submit = "/v1/datasets/kindergarten_readiness/submissions"
    with database(args.database) as url, server(url) as srv:
        partner = {"Authorization": f"Bearer {token(srv, 'district-sis')}"}
        manager = {"Authorization": f"Bearer {token(srv, 'district-data-manager')}"}
        csv = {**partner, "Content-Type": "text/csv"}

        ordinary = median_of(
            runs,
            lambda i: timed(
                srv.port, "POST", submit, rows(1_000, f"B{string.ascii_uppercase[i]}"), csv
            ),
        )
        header = widest_header()
        cases: list[tuple[str, int, tuple[float, int]]] = [
            (
                f"CSV header, {header.count(b',') + 1:,} distinct columns",
                len(header),
                median_of(runs, lambda i: timed(srv.port, "POST", submit, header + b"x\n", csv)),
            ),
        ]
        one_name = b"a" * (LIMIT - 2) + b"\n"
        cases.append(
            (
                "CSV header, one column name of 1 MiB",
                len(one_name),
                median_of(runs, lambda i: timed(srv.port, "POST", submit, one_name, csv)),
            )
        )
        prefix = b'{"action": "submit", "draft": '
        room = (LIMIT - len(prefix) - 1) // 2
        deep = prefix + b"[" * room + b"]" * room + b"}"
        decide = {**manager, "Content-Type": "application/json"}
        cases.append(
            (
                f"JSON body nested {room:,} deep",
                len(deep),
                median_of(
                    runs, lambda i: timed(srv.port, "POST", "/v1/policy/decide", deep, decide)
                ),
            )
        )
        unclosed = prefix + b"[" * (LIMIT - len(prefix))
        cases.append(
            (
                f"JSON body of {LIMIT - len(prefix):,} unclosed [",
                len(unclosed),
                median_of(
                    runs, lambda i: timed(srv.port, "POST", "/v1/policy/decide", unclosed, decide)
                ),
            )
        )
        items = (LIMIT - len(prefix) - 3) // 2
        wide = prefix + b"[" + b"0," * (items - 1) + b"0]}"
        cases.append(
            (
                f"JSON body with {items:,} items",
                len(wide),
                median_of(
                    runs, lambda i: timed(srv.port, "POST", "/v1/policy/decide", wide, decide)
                ),
            )
        )
        record = b'{"student_id": ' + b"[" * (room - 20) + b"]" * (room - 20) + b"}\n"
        ndjson = {**partner, "Content-Type": "application/x-ndjson"}
        cases.append(
            (
                f"NDJSON record nested {room - 20:,} deep",
                len(record),
                median_of(runs, lambda i: timed(srv.port, "POST", submit, record, ndjson)),
            )
        )
        yaml_deep = b"uid: " + b"[" * room + b"]" * (room - 4)
        lint = {**manager, "Content-Type": "application/yaml"}
        cases.append(
            (
                f"YAML agreement nested {room:,} deep",
                len(yaml_deep),
                median_of(
                    runs, lambda i: timed(srv.port, "POST", "/v1/agreements/lint", yaml_deep, lint)
                ),
            )
        )

    print(f"database: {args.database}; one worker; median of {runs} request(s) each")
    print(
        f"{'ordinary 1,000-row CSV submission':<44} {len(rows(1_000, 'BA')):>9,} B  "
        f"{ordinary[0] * 1000:8.1f} ms  HTTP {ordinary[1]}"
    )
    ok = ordinary[1] == 201
    for label, size, (seconds, status) in cases:
        print(f"{label:<44} {size:>9,} B  {seconds * 1000:8.1f} ms  HTTP {status}")
        ok = ok and seconds < TARGET_SECONDS and 400 <= status < 500
    worst = max(seconds for _, _, (seconds, _) in cases)
    print(
        "summary:",
        json.dumps(
            {
                "ordinary_submission_ms": round(ordinary[0] * 1000, 1),
                "worst_hostile_ms": round(worst * 1000, 1),
                "target_ms": TARGET_SECONDS * 1000,
                "targets_met": ok,
            }
        ),
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
