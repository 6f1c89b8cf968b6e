"""Shared benchmark plumbing: a real server process on a fresh database, and a load generator."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PG_ADMIN = os.environ.get(
    "BACKBONE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, empty database: an SQLite file or a new PostgreSQL database."""
    if kind == "sqlite":
        tmp = tempfile.mkdtemp(prefix="bench-db-")
        try:
            yield f"sqlite:///{tmp}/backbone.db"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    data_dir: Path
    credentials: dict[str, dict[str, Any]]


@contextmanager
def server(
    database_url: str, *, seed: bool = True, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Migrate, optionally seed the demo initiative, and serve on a free port."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-var-"))
    port = free_port()
    environ = {
        **os.environ,
        "BACKBONE_DATA_DIR": str(data_dir),
        "BACKBONE_DATABASE_URL": database_url,
        "BACKBONE_TOKEN_RATE_LIMIT": "1000000/minute",
        "BACKBONE_WRITE_RATE_LIMIT": "1000000/minute",
        "BACKBONE_PUBLIC_READ_RATE_LIMIT": "1000000/minute",
        "BACKBONE_LOG_LEVEL": "WARNING",
        "BACKBONE_ISSUER": f"http://127.0.0.1:{port}",
        **(env or {}),
    }
    subprocess.run([str(BIN / "backbone"), "migrate"], env=environ, check=True, capture_output=True)
    if seed:
        subprocess.run(
            [str(BIN / "backbone"), "seed-demo"], env=environ, check=True, capture_output=True
        )
    proc = subprocess.Popen(
        [str(BIN / "backbone"), "serve", "--port", str(port), "--workers", str(workers)],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        creds_path = data_dir / "demo-credentials.json"
        creds = (
            {c["client_id"]: c for c in json.loads(creds_path.read_text())["clients"]}
            if seed
            else {}
        )
        yield Server(f"http://127.0.0.1:{port}", port, proc, data_dir, creds)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def seed_agreement(url: str, document: dict[str, Any], partner: str, prefix: str) -> dict[str, Any]:
    """Migrate ``url``, then through the services the API uses: the partner organization and
    the backbone, a partner system (``sis``), the partner's data manager and a backbone manager
    (``mgr``, client id ``{prefix}-mgr``), and ``document`` approved by both parties. Returns
    the credentials of ``sis`` and ``mgr``."""
    return seed_agreements(url, document, [partner], prefix)


def seed_agreements(
    url: str, document: dict[str, Any], partners: Sequence[str], prefix: str
) -> dict[str, Any]:
    """:func:`seed_agreement` for several partners, all parties to ``document`` with the
    backbone: one backbone and its manager (``mgr``); per partner its organization, system and
    data manager, who approves the agreement. Returns the credentials of ``mgr`` and of each
    partner's system, ``sis`` for the first and ``sis-{partner}`` for every one."""
    from datetime import UTC, datetime

    from sqlalchemy.orm import sessionmaker

    from agreements import service as agreements
    from agreements.document import AgreementDocument
    from core.context import RequestContext
    from core.db import make_engine
    from identity import service as identity
    from migrations.commands import upgrade
    from policy.model import Principal

    upgrade(url)
    engine = make_engine(url)
    try:
        with sessionmaker(bind=engine)() as session:
            now = datetime.now(UTC)
            admin = RequestContext("bench-seed", now, None)
            identity.create_organization(session, admin, "backbone", "Backbone", "backbone")
            issued = {
                "mgr": identity.create_client(
                    session, admin, organization_id="backbone", name="mgr",
                    role="backbone-manager", client_id=f"{prefix}-mgr",
                ),
            }  # fmt: skip

            def as_(client: str, org: str, kind: str) -> RequestContext:
                scopes = frozenset({"agreements:write", "agreements:approve"})
                return RequestContext("bench-seed", now, Principal(client, org, kind, scopes))

            approvers = [(f"{prefix}-mgr", "backbone", "backbone")]
            for i, partner in enumerate(partners):
                identity.create_organization(
                    session, admin, partner, f"Bench partner {partner}", "partner"
                )
                system = identity.create_client(
                    session, admin, organization_id=partner, name="sis", role="partner-system"
                )
                issued[f"sis-{partner}"] = system
                if i == 0:
                    issued["sis"] = system
                manager = f"{prefix}-dm" if i == 0 else f"{prefix}-dm-{partner}"
                identity.create_client(
                    session, admin, organization_id=partner, name="dm", role="data-manager",
                    client_id=manager,
                )  # fmt: skip
                approvers.append((manager, partner, "partner"))
            parsed = AgreementDocument.model_validate(document)
            version = agreements.create(
                session, as_(f"{prefix}-mgr", "backbone", "backbone"), parsed
            )
            for client, org, kind in approvers:
                agreements.approve(
                    session, as_(client, org, kind), parsed.uid, 1, version.content_hash
                )
            session.commit()
            out: dict[str, Any] = {}
            for name, made in issued.items():
                assert made.secret is not None
                out[name] = {"client_id": made.client.id, "client_secret": made.secret}
            return out
    finally:
        engine.dispose()


def throughput(
    port: int,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    seconds: float = 5.0,
    connections: int = 4,
    method: str = "GET",
) -> float:
    """Requests per second over ``seconds`` with ``connections`` concurrent keep-alive HTTP/1.1
    connections, driven from one lean asyncio process (raw sockets, a prebuilt request, the
    answer read by its Content-Length). On a 2-core machine the load generator shares the CPU
    with the server; a client built on ``http.client`` in many processes takes half of it and
    measures itself as much as the server. Every answer must be 200."""
    import asyncio

    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (head + "\r\n").encode()

    async def connection(deadline: float) -> tuple[int, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        count = errors = 0
        loop = asyncio.get_running_loop()
        try:
            while loop.time() < deadline:
                writer.write(request)
                header = await reader.readuntil(b"\r\n\r\n")
                status = int(header[9:12])
                match = _CONTENT_LENGTH.search(header)
                if match is None:
                    raise RuntimeError("an answer without Content-Length")
                await reader.readexactly(int(match.group(1)))
                if status == 200:
                    count += 1
                else:
                    errors += 1
        finally:
            writer.close()
        return count, errors

    async def run() -> tuple[float, int, int]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = await asyncio.gather(*(connection(start + seconds) for _ in range(connections)))
        elapsed = loop.time() - start
        return elapsed, sum(r[0] for r in results), sum(r[1] for r in results)

    elapsed, total, errors = asyncio.run(run())
    if errors:
        raise RuntimeError(f"{errors} requests failed during the load test")
    return total / elapsed


_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def client_token(base: str, cred: Mapping[str, str]) -> str:
    """An access token for a client by its secret (client_credentials), over httpx."""
    r = httpx.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(cred["client_id"], cred["client_secret"]),
        timeout=60,
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def token(srv: Server, client_id: str) -> str:
    import base64

    cred = srv.credentials[client_id]
    conn = http.client.HTTPConnection("127.0.0.1", srv.port)
    basic = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()
    conn.request(
        "POST",
        "/oauth/token",
        body="grant_type=client_credentials",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    resp = conn.getresponse()
    body = json.loads(resp.read())
    return str(body["access_token"])
