"""Reading a stored release: requests per second for a dashboard (target: at least 1,000/s on a
2-core machine), against the unprotected no-op route in the same run for scale.

Every read is authorized against the agreements and written to the audit log, as in production;
the rendered page of an immutable release is cached in memory.
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
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    seconds = 2.0 if args.quick else args.seconds
    with database(args.database) as url, server(url, workers=args.workers) as srv:
        bearer = token(srv, "backbone-dashboard")
        headers = {"Authorization": f"Bearer {bearer}"}
        conn = http.client.HTTPConnection("127.0.0.1", srv.port)
        conn.request("GET", "/v1/indicators/kindergarten-readiness/releases", headers=headers)
        release = json.loads(conn.getresponse().read())[0]["id"]
        conn.request("GET", f"/v1/releases/{release}", headers=headers)
        resp = conn.getresponse()
        size = len(resp.read())
        path = f"/v1/releases/{release}"
        throughput(srv.port, path, headers=headers, seconds=1, connections=args.connections)
        read_rps = throughput(
            srv.port, path, headers=headers, seconds=seconds, connections=args.connections
        )
        open_rps = throughput(srv.port, "/healthz", seconds=seconds, connections=args.connections)
    print(
        f"database: {args.database}; {args.workers} server workers; {args.connections} keep-alive clients; {seconds:.0f} s each"
    )
    print(
        f"GET {path} ({size:,} bytes, authorized and audited): {read_rps:8.0f} req/s (target >= 1000)"
    )
    print(
        f"GET /healthz (no-op) on the same server:             {open_rps:8.0f} req/s  (ratio {read_rps / open_rps:.2f})"
    )
    return 0 if read_rps >= 1000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
