"""Reading a stored release: requests per second for a dashboard (target: at least 1,000/s on a
2-core machine), against the unprotected no-op route in the same run for scale.

Every read is authorized against the agreements and written to the audit log, as in production;
the rendered page of an immutable release is cached in memory. A read is answered only once its
audit event is committed; the events of concurrent reads share a transaction, and the log's head
is one lock for every worker, so throughput grows with the number of reads in flight. The figure
is taken at 64 keep-alive connections (many dashboards' viewers) and, for comparison, at 16.
"""

from __future__ import annotations

import argparse
import http.client
import json

from bench.common import database, server, throughput, token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--low-connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    seconds = 2.0 if args.quick else args.seconds
    with database(args.database) as url, server(url, workers=args.workers) as srv:
        bearer = token(srv, "backbone-dashboard")
        headers = {"Authorization": f"Bearer {bearer}"}
        conn = http.client.HTTPConnection("127.0.0.1", srv.port)
        conn.request("GET", "/v1/indicators/kindergarten-readiness/releases", headers=headers)
        # The release by neighborhood (the demo has several; their order is that of creation).
        listed = json.loads(conn.getresponse().read())
        release = next(r["id"] for r in listed if "neighborhood" in r["dimensions"])
        conn.request("GET", f"/v1/releases/{release}", headers=headers)
        resp = conn.getresponse()
        size = len(resp.read())
        path = f"/v1/releases/{release}"
        sliced = f"{path}?filter=neighborhood:Bayview,_T"
        conn.request("GET", sliced, headers=headers)
        slice_size = len(conn.getresponse().read())
        throughput(srv.port, path, headers=headers, seconds=1, connections=args.connections)
        read_rps = throughput(
            srv.port, path, headers=headers, seconds=seconds, connections=args.connections
        )
        slice_rps = throughput(
            srv.port, sliced, headers=headers, seconds=seconds, connections=args.connections
        )
        slice_low_rps = throughput(
            srv.port, sliced, headers=headers, seconds=seconds, connections=args.low_connections
        )
        open_rps = throughput(srv.port, "/healthz", seconds=seconds, connections=args.connections)
    print(
        f"database: {args.database}; {args.workers} server workers; {args.connections} keep-alive"
        f" connections from one asyncio client process; {seconds:.0f} s each"
    )
    print(
        f"a dashboard's slice (one neighborhood's series), {slice_size:,} bytes: {slice_rps:8.0f} req/s (target >= 1000)"
    )
    print(
        f"  the same slice with {args.low_connections} connections in flight:            {slice_low_rps:8.0f} req/s"
    )
    print(f"the whole release, {size:,} bytes:                    {read_rps:8.0f} req/s")
    print(
        f"GET /healthz (no-op) on the same server:                  {open_rps:8.0f} req/s (slice / no-op {slice_rps / open_rps:.2f})"
    )
    print("every read above is authorized against the agreements and audited (group-committed)")
    return 0 if slice_rps >= 1000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
