"""Every command the README documents, run as an operator runs it: ``backbone ...`` in a fresh
interpreter (a subprocess), with only environment variables for settings, against a database made
by ``backbone migrate`` and a service started by ``backbone serve``.

Tests that call the command functions inside the test process pass even when a command cannot
work on its own (a model its query needs was imported by some other test); these cannot.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import FreshDatabase

BACKBONE = Path(sys.executable).parent / "backbone"
REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.process, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    url: str
    data_dir: Path
    port: int
    cwd: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("BACKBONE_") and k not in ("PORT", "MAKEFLAGS", "MFLAGS")
        }
        env.update(
            {
                "BACKBONE_DATABASE_URL": self.url,
                "BACKBONE_DATA_DIR": str(self.data_dir),
                "PORT": str(self.port),
                "BACKBONE_LOG_LEVEL": "WARNING",
                "BACKBONE_LOG_JSON": "false",
            }
        )
        env.update(extra)
        return env

    def run(
        self, *args: str, status: int = 0, input: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BACKBONE), *args],
            env=self.env(**env),
            cwd=self.cwd,
            capture_output=True,
            text=True,
            input=input,
            timeout=600,
        )
        assert done.returncode == status, (args, done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def credentials(self) -> dict[str, dict[str, Any]]:
        raw = json.loads((self.data_dir / "demo-credentials.json").read_text())
        return {c["client_id"]: c for c in raw["clients"]}

    def token(self, client_id: str) -> str:
        cred = self.credentials()[client_id]
        r = httpx.post(
            f"{self.base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, cred["client_secret"]),
            timeout=60,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def serve(dep: Deployment, *args: str, **env: str) -> Server:
    """``backbone serve`` (port from PORT) until /healthz answers."""
    proc = subprocess.Popen(
        [str(BACKBONE), "serve", *args],
        env=dep.env(**env),
        cwd=dep.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Server(proc)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "serve exited")
        try:
            if httpx.get(f"{dep.base}/healthz", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError("backbone serve did not answer")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def deployment(
    fresh_databases: FreshDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Deployment:
    root = tmp_path_factory.mktemp("deployment")
    return Deployment(fresh_databases.url(), root / "var", _free_port(), root)


def test_serve_on_an_unmigrated_database_answers_readyz_503_then_becomes_ready(
    deployment: Deployment,
):
    server = serve(deployment)
    try:
        r = httpx.get(f"{deployment.base}/readyz", timeout=60)
        assert r.status_code == 503
        assert "not migrated" in r.json()["checks"]["database"]
        r = httpx.get(f"{deployment.base}/v1/whoami", timeout=60)
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "/problems/service-not-ready"
        assert int(r.headers["retry-after"]) > 0
        assert r.headers["x-request-id"]

        assert "database migrated to head" in deployment.run("migrate").stdout
        r = httpx.get(f"{deployment.base}/readyz", timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["checks"] == {"database": "ok", "migrations": "ok", "audit_log": "ok"}
        r = httpx.get(f"{deployment.base}/v1/whoami", timeout=60)
        assert r.status_code == 401  # served: a token is needed
    finally:
        server.stop()
    assert server.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal


def test_errors_are_one_line_and_a_non_zero_status(deployment: Deployment, tmp_path: Path):
    # A database that was never migrated (this command's own): one line, no traceback.
    other = Deployment(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "var", 1, tmp_path)
    done = other.run("org", "list", status=1)
    assert done.stderr.strip().splitlines() == [
        "error: the database is not migrated; run `backbone migrate` first"
    ]
    # A service that does not answer.
    done = other.run("agreement", "show", "x", "--client-id", "a", "--client-secret", "b", status=1)
    assert len(done.stderr.strip().splitlines()) == 1
    assert "cannot reach the service" in done.stderr
    done = other.run(
        "audit", "verify", "missing.ndjson", "--checkpoint", "x", "--public-key", "y", status=2
    )
    assert len(done.stderr.strip().splitlines()) == 1


def test_production_refuses_to_start_without_a_database_url_or_a_master_key(tmp_path: Path):
    # The image sets BACKBONE_ENV=production; compose passes an unset variable as "".
    dep = Deployment(f"sqlite:///{tmp_path / 'given.db'}", tmp_path / "var", _free_port(), tmp_path)
    key = tmp_path / "master.key"
    key.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))
    production = {"BACKBONE_ENV": "production", "BACKBONE_MASTER_KEY_FILE": str(key)}
    for command in (["migrate"], ["worker", "--once"], ["serve", "--port", str(dep.port)]):
        done = dep.run(*command, status=2, BACKBONE_DATABASE_URL="", **production)
        assert done.stderr.strip().splitlines() == [
            "error: refusing to start: BACKBONE_ENV=production requires BACKBONE_DATABASE_URL "
            "(postgresql+psycopg://user@host:5432/name, or an sqlite:/// URL if an embedded "
            "file is really meant)"
        ], command
    assert not (tmp_path / "var").exists()  # no embedded database was made on the way
    # Outside production the embedded default still applies.
    dep.run("migrate", BACKBONE_DATABASE_URL="", BACKBONE_MASTER_KEY_FILE=str(key))
    assert (tmp_path / "var" / "backbone.db").is_file()
    # With a database but no master key, production refuses too (and says why).
    done = dep.run("serve", "--port", str(dep.port), status=2, BACKBONE_ENV="production")
    assert "refusing to start" in done.stderr
    assert "BACKBONE_MASTER_KEY_FILE" in done.stderr
    # Given both, it starts.
    assert "database migrated to head" in dep.run("migrate", **production).stdout
    assert (tmp_path / "given.db").is_file()


@pytest.fixture(scope="module")
def seeded(deployment: Deployment) -> Iterator[Deployment]:
    deployment.run("migrate")
    out = deployment.run("seed-demo").stdout
    assert "demo client credentials written" in out
    assert "already seeded" in deployment.run("seed-demo").stdout
    yield deployment


def work(dep: Deployment, **env: str) -> Server:
    """``backbone worker``, as a service beside the API (PostgreSQL: releases that outlast the
    synchronous deadline are computed by it); its output goes to ``worker.log``."""
    with (dep.cwd / "worker.log").open("w") as log:
        proc = subprocess.Popen(
            [str(BACKBONE), "worker"],
            env=dep.env(**env),
            cwd=dep.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Server(proc)


@pytest.fixture(scope="module")
def served(seeded: Deployment) -> Iterator[Deployment]:
    # Port from PORT (no --port), behind a trusted proxy address: the README's production form.
    server = serve(seeded, "--proxy-headers", BACKBONE_FORWARDED_ALLOW_IPS="127.0.0.1")
    # On SQLite `backbone serve` runs release jobs itself; on PostgreSQL a worker does.
    worker = work(seeded) if seeded.url.startswith("postgresql") else None
    try:
        yield seeded
    finally:
        server.stop()
        if worker is not None:
            alive = worker.proc.poll() is None
            worker.stop()  # SIGTERM: the jobs in hand finish, then it exits
            stderr = (seeded.cwd / "worker.log").read_text()
            assert alive and worker.proc.returncode == 0, stderr
            assert "Traceback" not in stderr, stderr


def test_the_cli_and_the_service_name_the_same_audit_log(served: Deployment):
    """Without BACKBONE_ISSUER, ``audit public-key`` and the running service agree (both derive
    the issuer from PORT), so checkpoints the CLI signs verify with the key the API publishes."""
    cli_key = served.run("audit", "public-key").stdout.strip()
    api_key = httpx.get(f"{served.base}/v1/audit/public-key?format=vkey", timeout=60).text.strip()
    assert cli_key == api_key
    assert cli_key.startswith(f"127.0.0.1:{served.port}/audit+")
    pem = served.run("audit", "public-key", "--format", "pem").stdout
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")


def test_administration_commands(served: Deployment, tmp_path: Path):
    served.run("org", "create", "cli-partner", "CLI Partner", "--kind", "partner")
    assert "cli-partner" in served.run("org", "list").stdout
    # The same organization again: one line, no traceback.
    done = served.run("org", "create", "cli-partner", "CLI Partner", "--kind", "partner", status=1)
    assert len(done.stderr.strip().splitlines()) == 1
    issued = json.loads(
        served.run(
            "client", "create", "cli-partner", "CLI system", "--role", "partner-system"
        ).stdout
    )
    client_id = issued["client_id"]
    rotated = json.loads(served.run("client", "rotate-secret", client_id).stdout)
    assert rotated["client_secret"] != issued["client_secret"]
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc.jwk import ECKey

    key = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    served.run("client", "register-keys", client_id, str(jwks))
    served.run("client", "disable", client_id)
    assert "new signing key" in served.run("keys", "rotate").stdout


def test_data_manager_commands(served: Deployment, tmp_path: Path):
    creds = str(served.data_dir / "demo-credentials.json")
    agreement = yaml.safe_load((resources.files("demo") / "agreements" / "health.yaml").read_text())
    agreement["uid"] = "cli-birth-outcomes"
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(agreement))
    assert "lints clean" in served.run("agreement", "lint", str(path)).stdout
    # No --url: BACKBONE_URL, else the issuer, which follows PORT like the server's.
    served.run("agreement", "draft", str(path), "--credentials", creds, "--as", "backbone-manager")
    done = served.run(
        "agreement", "approve", "cli-birth-outcomes", "1", "--yes",
        "--credentials", creds, "--as", "health-data-manager",
    )  # fmt: skip
    assert "content hash" in done.stdout
    served.run(
        "agreement", "approve", "cli-birth-outcomes", "1", "--yes",
        "--credentials", creds, "--as", "backbone-manager",
    )  # fmt: skip
    shown = served.run(
        "agreement", "show", "cli-birth-outcomes", "--credentials", creds,
        "--as", "health-data-manager", BACKBONE_URL=served.base,
    )  # fmt: skip
    assert json.loads(shown.stdout)["id"] == "cli-birth-outcomes"
    done = served.run(
        "agreement", "status", "cli-birth-outcomes", "suspend", "--reason", "review",
        "--credentials", creds, "--as", "health-data-manager",
    )  # fmt: skip
    assert json.loads(done.stdout)["status"] == "suspended"

    indicators = yaml.safe_load(
        (resources.files("demo") / "indicators" / "indicators.yaml").read_text()
    )
    definition = next(i for i in indicators if i["id"] == "kindergarten-readiness")
    definition["id"] = "cli-readiness"
    ind = tmp_path / "indicator.yaml"
    ind.write_text(yaml.safe_dump(definition))
    done = served.run(
        "indicator", "define", str(ind), "--credentials", creds, "--as", "backbone-manager"
    )
    assert json.loads(done.stdout)["id"] == "cli-readiness"
    done = served.run(
        "indicator", "release", "cli-readiness", "--dimension", "school_year",
        "--credentials", creds, "--as", "backbone-manager",
    )  # fmt: skip
    assert "cells by status" in done.stdout


def test_codelist_commands(served: Deployment, tmp_path: Path):
    creds = str(served.data_dir / "demo-credentials.json")
    path = tmp_path / "wards.yaml"
    path.write_text(
        "id: cli-wards\ntitle: City wards\nkind: geography\n"
        "standard: https://example.org/wards\ncodes:\n- code: W1\n  label: Ward 1\n- code: W2\n"
    )
    done = served.run(
        "codelist", "create", str(path), "--credentials", creds, "--as", "backbone-manager"
    )
    created = json.loads(done.stdout)
    assert (created["ref"], created["code_count"]) == ("cli-wards@1", 2)
    # The same content again is refused with the problem document and a non-zero status.
    again = served.run(
        "codelist", "create", str(path), "--credentials", creds, "--as", "backbone-manager",
        status=1,
    )  # fmt: skip
    assert "code-list-conflict" in again.stdout
    refused = served.run(
        "codelist", "create", str(path), "--credentials", creds, "--as", "district-data-manager",
        status=1,
    )  # fmt: skip
    assert "insufficient-scope" in refused.stdout
    listed = served.run("codelist", "list", "--credentials", creds, "--as", "district-sis").stdout
    lines = {line.split("\t")[0]: line.split("\t") for line in listed.splitlines()}
    assert lines["cli-wards@1"] == ["cli-wards@1", "geography", "2", "City wards"]
    assert lines["neighborhoods@1"][1:3] == ["geography", "40"]


def test_demo_walkthrough_follows_backbone_url(served: Deployment):
    done = served.run("demo", BACKBONE_URL=served.base)
    assert "receipt:" in done.stdout
    # The health agreement's review: held, reviewed and approved, then read by the dashboard.
    assert "state pending_review" in done.stdout and "state published" in done.stdout
    # The community reads the public scorecard without a token.
    assert "Children enter kindergarten ready to learn" in done.stdout
    assert "Kindergarten readiness rate: " in done.stdout


def test_make_demo_passes_port_and_backbone_url():
    dry = subprocess.run(
        ["make", "-s", "-n", "demo", "PORT=9123"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "BACKBONE_URL"},
        check=True,
    )
    command = dry.stdout.strip().splitlines()[-1]
    assert "demo --url" in command
    expanded = subprocess.run(
        ["sh", "-c", f"echo {command.split('--url', 1)[1]}"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        check=True,
    ).stdout.strip()
    assert expanded == "http://127.0.0.1:9123"
    expanded = subprocess.run(
        ["sh", "-c", f"echo {command.split('--url', 1)[1]}"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "BACKBONE_URL": "http://example.test:1"},
        check=True,
    ).stdout.strip()
    assert expanded == "http://example.test:1"


def test_releases_publish_due(served: Deployment):
    """The cron command publishes a held release whose review window has passed (the demo's
    health agreement: 10 days, then publish), with its audit event; the running service, which
    answered 409 while it was held, serves it at once. (Before the records commands, whose
    re-wrap under a new master key leaves the running service unable to compute.)"""
    from datetime import UTC, datetime, timedelta

    def call(method: str, path: str, client: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {served.token(client)}"}
        return httpx.request(method, f"{served.base}{path}", headers=headers, timeout=120, **kw)

    r = call(
        "POST",
        "/v1/indicators/low-birth-weight/releases",
        "backbone-manager",
        json={"dimensions": ["neighborhood"]},
    )
    assert r.status_code == 202, r.text
    rid = r.json()["id"]
    assert call("GET", f"/v1/releases/{rid}", "health-dashboard").status_code == 409
    report = json.loads(served.run("releases", "publish-due", "--json").stdout)
    assert {(i["release"], i["state"]) for i in report} == {(rid, "pending_review")}
    later = (datetime.now(UTC) + timedelta(days=11)).isoformat()
    done = served.run("releases", "publish-due", "--dry-run", "--at", later)
    assert (
        "dry run" in done.stdout and f"release {rid} of low-birth-weight: published" in done.stdout
    )
    assert call("GET", f"/v1/releases/{rid}", "health-dashboard").status_code == 409
    done = served.run("releases", "publish-due", "--at", later)
    assert "1 of 1 held release(s) published" in done.stdout
    r = call("GET", f"/v1/releases/{rid}", "health-dashboard")
    assert r.status_code == 200 and r.json()["state"] == "published"
    events = call(
        "GET", "/v1/audit/events?action=release.publish&limit=1000", "county-auditor"
    ).json()["items"]
    assert [e["detail"] for e in events if e["resource_id"] == rid] == ["the review window passed"]
    assert "0 of 0" in served.run("releases", "publish-due").stdout


def test_audit_commands(served: Deployment, tmp_path: Path):
    note = served.run("audit", "checkpoint").stdout
    assert note.startswith(f"127.0.0.1:{served.port}/audit\n")
    export, cp = tmp_path / "audit.ndjson", tmp_path / "audit.checkpoint"
    done = served.run("audit", "export", "-o", str(export), "--checkpoint-out", str(cp))
    assert "exported" in done.stderr
    vkey = tmp_path / "backbone-audit.vkey"
    vkey.write_text(served.run("audit", "public-key").stdout)
    done = served.run(
        "audit", "verify", str(export), "--checkpoint", str(cp), "--public-key", str(vkey)
    )
    assert "OK" in done.stdout
    done = served.run("audit", "self-check")
    assert done.stdout.startswith("OK: ")
    assert json.loads(served.run("audit", "self-check", "--json").stdout)["ok"] is True
    csv_export = tmp_path / "audit.csv"
    served.run("audit", "export", "-o", str(csv_export), "--format", "csv")

    token = served.token("county-auditor")
    r = httpx.get(
        f"{served.base}/v1/audit/proofs/inclusion?index=0",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    proof = tmp_path / "proof.json"
    proof.write_text(r.text)
    done = served.run("audit", "verify-proof", str(proof), "--public-key", str(vkey))
    assert done.stdout.startswith("OK")
    done = served.run(
        "audit", "verify-proof", str(proof), "--public-key", str(vkey), "--checkpoint", str(cp)
    )
    assert done.stdout.startswith("OK")


def test_records_commands(served: Deployment, tmp_path: Path):
    """The retention commands the README gives for cron, and the master-key re-wrap."""
    # A withdrawal under the district's 30 days' notice: the purge records when it takes effect.
    headers = {"Authorization": f"Bearer {served.token('district-sis')}"}
    listed = httpx.get(f"{served.base}/v1/submissions", headers=headers, timeout=60).json()
    sid = next(s["id"] for s in listed["items"] if s["status"] == "accepted")
    r = httpx.delete(f"{served.base}/v1/submissions/{sid}", headers=headers, timeout=60)
    assert r.status_code == 200 and r.json()["withdrawal"]["state"] == "scheduled", r.text
    done = served.run("records", "purge", "--dry-run", "--at", "2040-01-01T00:00:00Z")
    assert "dry run" in done.stdout and "data key(s) destroyed" in done.stdout
    effective = r.json()["withdrawal"]["effective_at"]
    assert f"submission {sid}: withdrawal took effect {effective}" in done.stdout
    report = json.loads(served.run("records", "purge", "--dry-run", "--json").stdout)
    assert isinstance(report, dict)
    served.run("records", "purge")
    served.run("purge")
    served.run("records", "purge", "--json")

    old = served.data_dir / "master.key"
    new = tmp_path / "new-master.key"
    new.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))
    done = served.run(
        "records", "rewrap", "--old-key-file", str(old), BACKBONE_MASTER_KEY_FILE=str(new)
    )
    assert "re-wrapped" in done.stdout


def test_downgrade_and_migrate(fresh_databases: FreshDatabase, tmp_path: Path):
    dep = Deployment(fresh_databases.url(), tmp_path / "var", 1, tmp_path)
    dep.run("migrate")
    assert "downgraded to base" in dep.run("downgrade", "base").stdout
    dep.run("migrate", "--revision", "head")


def test_every_model_is_registered_by_each_entry_point():
    """The API's and the CLI's database code see the whole schema from a fresh interpreter."""
    check = (
        "import sys, migrations.schema; from core.db import Base; "
        "sys.exit(sorted(set(Base.metadata.tables) - before) or 0)"
    )
    for setup in (
        "from core.db import Base; import api.app",
        "import os; os.environ['BACKBONE_DATABASE_URL'] = 'sqlite://'; from core.db import Base; "
        "import cli.database; cli.database.open_engine()",
    ):
        snippet = f"{setup}; before = set(Base.metadata.tables); {check}"
        done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True)
        assert done.returncode == 0, (setup, done.stdout, done.stderr)


def test_webhooks_deliver(served: Deployment):
    """``backbone webhooks deliver`` (cron) and ``--watch``: signed deliveries from the outbox,
    refused to an address the administrator has not allowed."""
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    from agreements import repository as agreement_repo
    from agreements.service import terms_of
    from core.db import make_engine, make_session_factory
    from core.keys import load_master_key
    from core.settings import Settings
    from notifications import service
    from notifications.events import EventType
    from tests.notifications.helpers import LOCAL, manager
    from tests.notifications.receiver import Receiver

    master = load_master_key(Settings(data_dir=served.data_dir, database_url=served.url))
    engine = make_engine(served.url)
    sessions = make_session_factory(engine)

    def publish(n: int) -> str:
        with sessions() as session:
            row = agreement_repo.versions(session, "district-early-learning-outcomes")[-1]
            event = service.emit(
                session,
                EventType.RELEASE_PUBLISHED,
                {"release": f"rel_cli{n}"},
                now=datetime.now(UTC),
                agreements=[terms_of(row)],
            )
            session.commit()
            return event.id

    try:
        with Receiver() as rx:
            with sessions() as session:
                made = service.register(
                    session,
                    manager(),
                    master,
                    LOCAL,
                    url=rx.url + "/hook",
                    event_types=["release.published"],
                )
                session.commit()
            first = publish(1)
            # Without the allowance the deliverer refuses the loopback address: nothing is sent.
            done = served.run("webhooks", "deliver", "--json", BACKBONE_WEBHOOK_BACKOFF_SECONDS="0")
            assert json.loads(done.stdout) == {
                "attempted": 1, "delivered": 0, "retrying": 1, "failed": 0
            }  # fmt: skip
            assert rx.received == []
            allow = {"BACKBONE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}
            done = served.run("webhooks", "deliver", **allow)
            assert "1 attempted: 1 delivered" in done.stdout
            (got,) = rx.received
            payload = Webhook(made.secret).verify(got.body, got.headers)
            assert got.headers["webhook-id"] == first
            assert payload["data"] == {"release": "rel_cli1"}

            proc = subprocess.Popen(
                [str(BACKBONE), "webhooks", "deliver", "--watch", "0.5"],
                env=served.env(**allow),
                cwd=served.cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                second = publish(2)
                deadline = time.monotonic() + 120
                while len(rx.received) < 2 and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert [r.headers["webhook-id"] for r in rx.received] == [first, second]
            finally:
                proc.send_signal(signal.SIGINT)
                _out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert "Traceback" not in err
    finally:
        engine.dispose()


def test_user_create_prints_the_password_and_totp_once_and_the_person_signs_in(
    served: Deployment,
):
    from identity.people import totp_code

    created = json.loads(
        served.run(
            "user",
            "create",
            "--org",
            "auditor",
            "--role",
            "auditor",
            "--username",
            "cli.auditor",
            "--name",
            "CLI Auditor",
        ).stdout
    )
    assert created["username"] == "cli.auditor" and created["role"] == "auditor"
    assert created["totp_uri"].startswith("otpauth://totp/")
    assert len(created["password"]) >= 20
    # The same username again: one line, no traceback.
    done = served.run(
        "user",
        "create",
        "--org",
        "auditor",
        "--role",
        "auditor",
        "--username",
        "cli.auditor",
        status=1,
    )
    assert len(done.stderr.strip().splitlines()) == 1
    # A role of another kind of organization is refused.
    served.run(
        "user",
        "create",
        "--org",
        "district",
        "--role",
        "auditor",
        "--username",
        "cli.x",
        status=1,
    )
    # --password-stdin: the password is read, not printed.
    given = served.run(
        "user",
        "create",
        "--org",
        "district",
        "--role",
        "data-manager",
        "--username",
        "cli.manager",
        "--password-stdin",
        input="correct horse battery staple\n",
    )
    assert "password" not in json.loads(given.stdout)
    for username, password, secret in (
        ("cli.auditor", created["password"], created["totp_secret"]),
        ("cli.manager", "correct horse battery staple", json.loads(given.stdout)["totp_secret"]),
    ):
        from datetime import UTC, datetime

        with httpx.Client(base_url=served.base, timeout=60) as browser:
            r = browser.post(
                "/sign-in",
                data={
                    "username": username,
                    "password": password,
                    "code": totp_code(secret, datetime.now(UTC)),
                },
            )
            assert r.status_code == 303, r.text
            assert browser.get("/console").status_code == 200
            if username == "cli.manager":
                # Disabled: the session ends at once.
                assert "disabled" in served.run("user", "disable", username).stdout
                assert browser.get("/console").status_code == 303


def test_idp_commands_and_people_who_sign_in_with_their_organizations_provider(
    served: Deployment,
):
    secret = "idp-client-secret-from-the-provider"
    # The secret only ever from stdin, never as an argument.
    done = served.run(
        "idp", "set", "district", "--issuer", "https://127.0.0.1:1", "--client-id", "bb", status=2
    )
    assert "--client-secret-stdin" in done.stderr
    served.run(
        "idp",
        "set",
        "district",
        "--issuer",
        "http://login.district.example",
        "--client-id",
        "bb",
        "--client-secret-stdin",
        input=secret + "\n",
        status=1,
    )
    served.run(
        "idp",
        "set",
        "nowhere",
        "--issuer",
        "https://127.0.0.1:1",
        "--client-id",
        "bb",
        "--client-secret-stdin",
        input=secret + "\n",
        status=1,
    )
    shown = json.loads(
        served.run(
            "idp",
            "set",
            "district",
            "--issuer",
            "https://127.0.0.1:1/",
            "--client-id",
            "backbone-console",
            "--client-secret-stdin",
            "--auth-method",
            "client_secret_post",
            "--claim",
            "email",
            "--allowed-domain",
            "district.example",
            input=secret + "\n",
        ).stdout
    )
    assert shown["issuer"] == "https://127.0.0.1:1" and shown["claim"] == "email"
    assert shown["allowed_domains"] == ["district.example"]
    assert shown["redirect_uri"].endswith("/sign-in/sso/callback")
    again = served.run("idp", "show", "district")
    assert (
        secret not in again.stdout and json.loads(again.stdout)["client_id"] == "backbone-console"
    )

    created = json.loads(
        served.run(
            "user",
            "create",
            "--org",
            "district",
            "--role",
            "data-manager",
            "--username",
            "cli.sso",
            "--oidc",
            "--login",
            "sso@district.example",
        ).stdout
    )
    assert created["auth"] == "oidc" and created["login"] == "sso@district.example"
    assert "password" not in created and "totp_secret" not in created
    served.run(
        "user", "create", "--org", "district", "--role", "data-manager", "--username", "cli.x",
        "--login", "x", status=2,
    )  # fmt: skip
    with httpx.Client(base_url=served.base, timeout=60) as browser:
        page = browser.get("/sign-in")
        assert 'href="/sign-in/sso?organization=district' in page.text
        # No password signs this person in.
        r = browser.post(
            "/sign-in", data={"username": "cli.sso", "password": "x" * 16, "code": "000000"}
        )
        assert r.status_code == 401
        # The provider is set up but unreachable: a page says so.
        r = browser.get("/sign-in/sso", params={"organization": "district"})
        assert r.status_code == 502 and "could not be reached" in r.text

    assert "removed" in served.run("idp", "remove", "district").stdout
    served.run("idp", "show", "district", status=1)
    served.run("idp", "remove", "district", status=1)
