"""OAuth benchmark: a protected no-op route against an unprotected one, and token issuance.

The protected route (``GET /v1/whoami``) verifies the ES256 access token (verified claims are
cached by token until it expires) and checks that its client is enabled and its ``jti`` not
revoked (followed in memory from the database's change feed); the unprotected route
(``GET /healthz``) does nothing. Both run on the same server in the same run; the figure is the
ratio of their throughputs (target: at least 0.70).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import time
import uuid

from bench.common import database, server, throughput, token


def _issue_rate(port: int, basic: str, seconds: float) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = "grant_type=client_credentials"
    headers = {
        "Authorization": f"Basic {basic}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn.request("POST", "/oauth/token", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        n += 1
    return n / seconds


def _assertion_rate(port: int, client_id: str, key: object, seconds: float) -> float:
    from joserfc import jwt

    conn = http.client.HTTPConnection("127.0.0.1", port)
    aud = f"http://127.0.0.1:{port}/oauth/token"
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
        }
        assertion = jwt.encode({"alg": "ES256"}, claims, key)
        body = (
            "grant_type=client_credentials&client_assertion_type="
            "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion="
            + assertion
        )
        conn.request(
            "POST",
            "/oauth/token",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        n += 1
    return n / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    seconds = 2.0 if args.quick else args.seconds
    with database(args.database) as url, server(url) as srv:
        bearer = token(srv, "district-sis")
        headers = {"Authorization": f"Bearer {bearer}"}
        # Warm up both paths (connection pools, key cache, imports).
        throughput(srv.port, "/healthz", seconds=1, connections=args.connections)
        throughput(srv.port, "/v1/whoami", headers=headers, seconds=1, connections=args.connections)
        # Interleaved pairs, the ratio of each pair, the median ratio: a shared machine's speed
        # drifts over a minute; within one pair both routes see the same machine.
        pairs = []
        for _ in range(args.pairs):
            o = throughput(srv.port, "/healthz", seconds=seconds, connections=args.connections)
            p = throughput(
                srv.port,
                "/v1/whoami",
                headers=headers,
                seconds=seconds,
                connections=args.connections,
            )
            pairs.append((o, p))
        pairs.sort(key=lambda pair: pair[1] / pair[0])
        open_rps, protected_rps = pairs[len(pairs) // 2]
        cred = srv.credentials["district-sis"]
        basic = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()
        secret_rate = _issue_rate(srv.port, basic, seconds)

        from joserfc.jwk import ECKey

        key = ECKey.generate_key("P-256", parameters={"kid": "bench"})
        admin = token(srv, "backbone-admin")
        conn = http.client.HTTPConnection("127.0.0.1", srv.port)
        conn.request(
            "POST",
            "/v1/clients",
            body=json.dumps(
                {
                    "organization": "district",
                    "name": "bench",
                    "role": "partner-system",
                    "token_endpoint_auth_method": "private_key_jwt",
                    "jwks": {"keys": [key.as_dict(private=False)]},
                }
            ),
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        created = json.loads(conn.getresponse().read())
        jwt_rate = _assertion_rate(srv.port, created["client_id"], key, seconds)

    ratio = protected_rps / open_rps
    spread = ", ".join(f"{p / o:.2f}" for o, p in pairs)
    print(
        f"database: {args.database}; {args.connections} keep-alive connections from one asyncio"
        f" client process; {seconds:.0f} s per measurement"
    )
    print(f"unprotected GET /healthz:           {open_rps:8.0f} req/s")
    print(f"protected   GET /v1/whoami:         {protected_rps:8.0f} req/s")
    print(f"protected / unprotected:            {ratio:8.2f}   (target >= 0.70)")
    print(f"  median of {len(pairs)} interleaved pairs; every pair's ratio: {spread}")
    print(
        f"token issuance, client_secret_basic:{secret_rate:8.1f} tokens/s (scrypt-verified secret)"
    )
    print(f"token issuance, private_key_jwt:    {jwt_rate:8.1f} tokens/s")
    return 0 if ratio >= 0.70 else 1


if __name__ == "__main__":
    raise SystemExit(main())
