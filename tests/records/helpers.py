"""Helpers for the record tests: a custom agreement, row counts, minimal seeding of a fresh DB."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from agreements import service as agreements
from agreements.document import AgreementDocument
from core.context import RequestContext
from core.keys import MasterKey
from policy.model import Principal
from records.models import DataKey, IdempotencyReservation, Segment, SegmentPart, Submission

REPO = Path(__file__).resolve().parents[2]

# A dataset whose values are distinctive strings and numbers, so that a byte search finds them
# if they were ever stored in the clear.
SURVEY_FIELDS: list[dict[str, Any]] = [
    {
        "name": "person_id",
        "type": "string",
        "role": "identifier",
        "constraints": {"required": True},
    },
    {"name": "case_number", "type": "integer", "role": "identifier"},
    {"name": "birth_date", "type": "date", "role": "attribute"},
    {
        "name": "school_year",
        "type": "string",
        "role": "attribute",
        "constraints": {"required": True},
    },
    {"name": "home_language", "type": "string", "role": "attribute"},
    {"name": "score", "type": "number", "role": "measure", "constraints": {"minimum": 0}},
    {"name": "visits", "type": "integer", "role": "measure", "constraints": {"maximum": 10**15}},
    {"name": "enrolled", "type": "boolean", "role": "attribute"},
]


def agreement_document(
    uid: str,
    fields: list[dict[str, Any]] | None = None,
    *,
    dataset: str = "survey",
    key: list[str] | None = None,
    period_field: str | None = None,
    grace_days: int = 30,
    expires: str = "2099-01-01",
    effective: str = "2020-01-01",
    linkage: bool = False,
    provider: str = "district",
    withdrawal: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": dataset,
        "provider": provider,
        "fields": fields or SURVEY_FIELDS,
        "primaryKey": key if key is not None else ["person_id", "school_year"],
    }
    if period_field:
        spec["period_field"] = period_field
    return {
        "profile": "backbone-odrl/1",
        "uid": uid,
        "title": f"Test agreement {uid}",
        "legal_basis": "ferpa-studies",
        "clauses": CLAUSES,
        "parties": [
            {"org": provider, "role": "assigner"},
            {"org": "backbone", "role": "assignee"},
        ],
        "term": {"effective": effective, "expires": expires},
        "datasets": [spec],
        "rules": {
            "permission": [
                {"id": "submit", "action": "submit", "target": dataset, "assignee": provider}
            ]
        },
        "disclosure": {"min_cell_size": 11},
        "linkage": {"allowed": linkage, "datasets": []},
        "retention": {"grace_period_days": grace_days},
        **({"withdrawal": withdrawal} if withdrawal is not None else {}),
    }


CLAUSES = {
    "purpose": "Testing.",
    "scope": "Synthetic records.",
    "duration": "While the test runs.",
    "data_disclosed": "None.",
    "destruction": "Crypto-shredded after the grace period.",
}

MANAGERS = {
    "district": ("district-data-manager", "partner"),
    "health": ("health-data-manager", "partner"),
    "early-learning": ("elnet-data-manager", "partner"),
    "backbone": ("backbone-manager", "backbone"),
}


def as_manager(org: str, now: datetime | None = None) -> RequestContext:
    client, kind = MANAGERS[org]
    scopes = frozenset({"agreements:write", "agreements:approve"})
    return RequestContext("test", now or datetime.now(UTC), Principal(client, org, kind, scopes))


def make_agreement(session: Session, document: dict[str, Any], now: datetime | None = None) -> int:
    """Create and approve (by every party) an agreement; returns its version."""
    doc = AgreementDocument.model_validate(document)
    version = agreements.create(session, as_manager("backbone", now), doc)
    for party in doc.parties:
        agreements.approve(
            session, as_manager(party.org, now), doc.uid, version.version, version.content_hash
        )
    session.flush()
    return version.version


def counts(session: Session) -> dict[str, int]:
    """Rows of every table an ingest writes to (besides the audit log)."""
    return {
        model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
        for model in (Submission, Segment, SegmentPart, DataKey, IdempotencyReservation)
    }


def csv_of(rows: list[dict[str, Any]]) -> bytes:
    header = list(rows[0])
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join("" if row[h] is None else str(row[h]) for h in header))
    return ("\n".join(lines) + "\n").encode()


# -- fresh databases and real server processes ------------------------------------------------


@dataclass
class Seeded:
    url: str
    master: MasterKey
    credentials: dict[str, dict[str, str]]


def seed_minimal(url: str, master: MasterKey, documents: list[dict[str, Any]]) -> Seeded:
    """Migrate ``url`` and create the demo's organizations and clients plus ``documents``."""
    from core.db import make_engine
    from demo.initiative import CLIENTS, ORGANIZATIONS
    from identity import service as identity
    from migrations.commands import upgrade

    upgrade(url)
    engine = make_engine(url)
    creds: dict[str, dict[str, str]] = {}
    try:
        with sessionmaker(bind=engine)() as session:
            admin = RequestContext("seed", datetime.now(UTC), None)
            for org_id, name, kind in ORGANIZATIONS:
                identity.create_organization(session, admin, org_id, name, kind)
            for client_id, org_id, role, description in CLIENTS:
                issued = identity.create_client(
                    session, admin, organization_id=org_id, name=description, role=role,
                    client_id=client_id,
                )  # fmt: skip
                assert issued.secret is not None
                creds[client_id] = {"client_id": client_id, "client_secret": issued.secret}
            for document in documents:
                make_agreement(session, document)
            session.commit()
    finally:
        engine.dispose()
    return Seeded(url, master, creds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``uvicorn api.main:app`` in a child process, on its own port and data directory."""

    def __init__(self, seeded: Seeded, data_dir: Path) -> None:
        self.seeded = seeded
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    def start(self) -> None:
        env = {
            **os.environ,
            "BACKBONE_DATABASE_URL": self.seeded.url,
            "BACKBONE_MASTER_KEY": base64.urlsafe_b64encode(self.seeded.master.raw)
            .decode()
            .rstrip("="),
            "BACKBONE_DATA_DIR": str(self.data_dir),
            "BACKBONE_ISSUER": self.base,
            "BACKBONE_LOG_LEVEL": "WARNING",
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def token(self, client_id: str) -> str:
        cred = self.seeded.credentials[client_id]
        r = httpx.post(
            f"{self.base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(cred["client_id"], cred["client_secret"]),
            timeout=30,
        )
        r.raise_for_status()
        return str(r.json()["access_token"])


@contextmanager
def running(seeded: Seeded, data_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(seeded, data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def random_master() -> MasterKey:
    return MasterKey(os.urandom(32))
