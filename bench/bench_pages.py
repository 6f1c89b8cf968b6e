"""The public pages of the demo initiative: 95th-percentile latency of the scorecard, a result
page and an indicator page (target: under 200 ms each), beside the JSON reads of the same data
(the indicator's series and its release) in the same run.

One client, one request at a time (a person browsing, not a load test), on a server process
seeded with the full demo initiative, with a warm-up pass first. Every page view is authorized
for the public and audited, like the API reads it is compared with; charts are rendered once
(releases never change) and then served from memory.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time

from bench.common import database, server

TARGET_MS = 200.0


def _timed(conn: http.client.HTTPConnection, path: str, accept: str) -> float:
    started = time.perf_counter()
    conn.request("GET", path, headers={"Accept": accept})
    response = conn.getresponse()
    response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}")
    return elapsed


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 40 if args.quick else args.requests
    with database(args.database) as url, server(url) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("GET", "/v1/results", headers={"Accept": "application/json"})
        answer = conn.getresponse()
        body = answer.read()
        result = json.loads(body)[0]["id"] if answer.status == 200 else None
        conn.request("GET", "/v1/indicators/kindergarten-readiness/releases")
        releases = json.loads(conn.getresponse().read())
        release = next(r["id"] for r in releases if "neighborhood" in r["dimensions"])
        paths = {
            "scorecard  /": ("/", "text/html"),
            "indicator  /indicators/kindergarten-readiness": (
                "/indicators/kindergarten-readiness",
                "text/html",
            ),
            "JSON series of the same indicator": (
                "/v1/indicators/kindergarten-readiness/series",
                "application/json",
            ),
            "JSON release (by neighborhood) of the same indicator": (
                f"/v1/releases/{release}",
                "application/json",
            ),
        }
        if result is None:
            conn.request("GET", "/")
            page = conn.getresponse().read().decode()
            result = page.split('href="/results/', 1)[1].split('"', 1)[0]
        paths["result     /results/{id}"] = (f"/results/{result}", "text/html")
        for path, accept in paths.values():  # warm-up: charts rendered, caches filled
            for _ in range(3):
                _timed(conn, path, accept)
        samples: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(n):
            for name, (path, accept) in paths.items():
                samples[name].append(_timed(conn, path, accept))
    print(
        f"database: {args.database}; one client, {n} requests per path, interleaved; "
        "every view authorized for the public and audited"
    )
    p95 = {name: _p95(s) for name, s in samples.items()}
    for name, s in samples.items():
        print(f"{name:58s} p50 {statistics.median(s):6.1f} ms   p95 {p95[name]:6.1f} ms")
    json_p95 = p95["JSON series of the same indicator"]
    ok = True
    for name in [n for n in paths if not n.startswith("JSON")]:
        ratio = p95[name] / json_p95
        print(f"{name:58s} p95 / JSON series p95 = {ratio:.1f}x (target p95 < {TARGET_MS:.0f} ms)")
        ok = ok and p95[name] < TARGET_MS
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
