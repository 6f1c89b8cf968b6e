"""A partner system, end to end, as it runs from cron: discover the dataset, download its
template, fill 100,000 rows, ``backbone submit`` them through a connection that is cut halfway
(the upload resumes and is stored once), read the receipt, rerun the same command (no second
submission), then send the same rows semicolon-delimited and as an .xlsx workbook.

Run it alone with ``.venv/bin/pytest -m e2e tests/e2e``.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from tests.conftest import MASTER, SMALL_BIRTHS, FreshDatabase

BACKBONE = Path(sys.executable).parent / "backbone"
DATASET = "kindergarten_readiness"
PARTNER = "district-sis"
ROWS = 100_000

pytestmark = [pytest.mark.e2e, pytest.mark.process, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CuttingProxy:
    """A TCP proxy that cuts the connection carrying the upload once, after ``cut_after``
    bytes from the client, and notes the tus requests it forwards."""

    upstream: int
    cut_after: int = 0
    # How many submissions or upload creations to answer 503 (Retry-After: 0) before passing.
    unavailable: int = 0
    port: int = field(default_factory=free_port)
    sent: int = 0
    cut: bool = False
    heads: int = 0
    patch_offsets: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while data := src.recv(65536):
                if upstream and self.unavailable and data.startswith(b"POST /v1/datasets/"):
                    self.unavailable -= 1
                    src.sendall(
                        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\n"
                        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    return
                if upstream:
                    self._note(data)
                    if self.cut_after and not self.cut and self.sent > self.cut_after:
                        self.cut = True
                        raise ConnectionResetError
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _note(self, data: bytes) -> None:
        if data.startswith(b"HEAD /v1/uploads/"):
            self.heads += 1
        if data.startswith(b"PATCH /v1/uploads/"):
            found = re.search(rb"(?i)\r\nupload-offset:\s*(\d+)", data)
            self.patch_offsets.append(int(found.group(1)) if found else -1)
        if self.patch_offsets:
            self.sent += len(data)


@pytest.fixture(scope="module")
def service(
    fresh_databases: FreshDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from demo.generator import generate
    from demo.seed import seed
    from migrations.commands import upgrade

    root = tmp_path_factory.mktemp("partner")
    url = fresh_databases.url()
    upgrade(url)
    engine = create_engine(url)
    creds_path = root / "var" / "demo-credentials.json"
    creds_path.parent.mkdir()
    with sessionmaker(bind=engine)() as session:
        seed(session, MASTER, creds_path, generate(births_per_year=SMALL_BIRTHS))
        session.commit()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")},
        "BACKBONE_DATABASE_URL": url,
        "BACKBONE_DATA_DIR": str(root / "var"),
        "BACKBONE_MASTER_KEY": base64.urlsafe_b64encode(MASTER.raw).decode().rstrip("="),
        "BACKBONE_ISSUER": f"http://127.0.0.1:{port}",
        "BACKBONE_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [str(BACKBONE), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "backbone serve did not answer"
            time.sleep(0.2)
        yield {"port": port, "root": root, "creds": creds_path, "env": env, "engine": engine}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        engine.dispose()


def fill(schema: dict[str, Any], template: str, period: str, n: int) -> list[dict[str, Any]]:
    """``n`` rows that satisfy the dataset's Table Schema, from the template's header: the
    identifier follows its pattern, enumerations are cycled, the period field is the period."""
    header = next(csv.reader(io.StringIO(template)))
    fields = {f["name"]: f for f in schema["fields"]}
    assert header == list(fields)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {}
        for name in header:
            f = fields[name]
            constraints = f.get("constraints", {})
            if f.get("x-backbone-role") == "identifier":
                assert constraints.get("pattern") == "[A-Z]{2}[0-9]{8}"
                row[name] = f"PS{i:08d}"
            elif "enum" in constraints:
                values = constraints["enum"]
                row[name] = period if period in values else values[i % len(values)]
            elif f["type"] == "boolean":
                row[name] = "true" if i % 3 else "false"
            elif f["type"] in ("integer", "number"):
                low, high = constraints.get("minimum", 0), constraints.get("maximum", 100)
                row[name] = low + i % (int(high) - int(low) + 1)
            else:
                row[name] = f"v{i % 7}"
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)


def write_xlsx(path: Path, rows: list[dict[str, Any]]) -> None:
    import openpyxl

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Records")
    sheet.append(list(rows[0]))
    for row in rows:
        sheet.append(list(row.values()))
    workbook.save(path)


def submissions(engine: Any) -> int:
    from records.models import Submission

    with engine.connect() as conn:
        return int(
            conn.scalar(
                select(func.count()).select_from(Submission).where(Submission.dataset == DATASET)
            )
        )


def test_a_partner_system_submits_through_a_cut_connection(service: dict[str, Any], tmp_path: Path):
    base = f"http://127.0.0.1:{service['port']}"
    creds = {c["client_id"]: c for c in json.loads(service["creds"].read_text())["clients"]}
    secret = creds[PARTNER]["client_secret"]
    token = httpx.post(
        f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=(PARTNER, secret)
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}

    # Discover the dataset and download its template.
    listed = httpx.get(f"{base}/v1/datasets", headers=auth, timeout=60).json()
    assert DATASET in [d["name"] for d in listed]
    dataset = httpx.get(f"{base}/v1/datasets/{DATASET}", headers=auth, timeout=60).json()
    template = httpx.get(f"{base}{dataset['links']['template']}", headers=auth, timeout=60).text
    period = dataset["periods_open"][-1]
    rows = fill(dataset["schema"], template, period, ROWS)
    records = tmp_path / "readiness.csv"
    write_csv(records, rows)
    before = submissions(service["engine"])

    # Through a proxy that cuts the upload's connection about halfway.
    import gzip

    compressed = len(gzip.compress(records.read_bytes(), compresslevel=1, mtime=0))
    proxy = CuttingProxy(service["port"], cut_after=compressed // 2)
    env = {
        **service["env"],
        "BACKBONE_URL": f"http://127.0.0.1:{proxy.port}",
        "BACKBONE_CLIENT_ID": PARTNER,
        "BACKBONE_CLIENT_SECRET": secret,
    }
    command = [
        str(BACKBONE), "submit", str(records), "--dataset", DATASET, "--period", period,
        "--resumable-above", "65536", "--retry-delay", "0.2",
        # Gzip on the way, as to a service across a network (the proxy is on this machine).
        "--compress", "always",
    ]  # fmt: skip

    def run(*args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*command, *args] if not args or args[0] != "--replace-command" else list(args[1:]),
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done

    try:
        first = run()
        assert proxy.cut, "the proxy did not cut the upload"
        assert proxy.heads >= 1, "the client did not ask where to resume"
        assert any(offset > 0 for offset in proxy.patch_offsets), proxy.patch_offsets
        assert "resuming at byte" in first.stderr
        receipt = json.loads(first.stdout)
        assert receipt["row_count"] == ROWS
        assert receipt["period"] == period
        assert submissions(service["engine"]) == before + 1

        # Read the receipt back, as the partner would, with its data-quality report: counts of
        # the partner's own records, never a value.
        r = httpx.get(f"{base}/v1/submissions/{receipt['id']}", headers=auth, timeout=60)
        assert r.status_code == 200 and r.json()["row_count"] == ROWS
        quality = r.json()["quality"]
        assert quality == receipt["quality"]
        assert quality["rows"] == ROWS
        assert set(quality["fields"]) == {f["name"] for f in dataset["schema"]["fields"]}
        assert all(f["present"] + f["missing"] == ROWS for f in quality["fields"].values())
        assert quality["periods"]["rows"] == {period: ROWS}
        # The demo's own submission for this period is still in use and this one does not
        # replace it: a warning, which never blocks.
        assert "period-overlap" in [w["code"] for w in quality["warnings"]]
        ident = next(
            f["name"]
            for f in dataset["schema"]["fields"]
            if f.get("x-backbone-role") == "identifier"
        )
        assert all(str(rows[i][ident]) not in json.dumps(quality) for i in range(100))

        # Rerun from cron: the same submission, nothing stored twice.
        again = json.loads(run().stdout)
        assert again["id"] == receipt["id"]
        assert submissions(service["engine"]) == before + 1
    finally:
        proxy.close()

    # The same rows, semicolon-delimited, as the replacement of the first.
    semicolon = tmp_path / "readiness-semicolon.csv"
    write_csv(semicolon, rows, delimiter=";")
    env["BACKBONE_URL"] = base
    done = run(
        "--replace-command", str(BACKBONE), "submit", str(semicolon), "--dataset", DATASET,
        "--period", period, "--replaces", receipt["id"],
    )  # fmt: skip
    replacement = json.loads(done.stdout)
    assert replacement["row_count"] == ROWS
    assert replacement["id"] != receipt["id"]
    assert replacement["csv"] == {"delimiter": ";"}
    # A replacement is no overlap; the same rows are no drop.
    assert not {"period-overlap", "rows-dropped"} & {
        w["code"] for w in replacement["quality"]["warnings"]
    }

    # And as a workbook.
    workbook = tmp_path / "readiness.xlsx"
    write_xlsx(workbook, rows)
    done = run(
        "--replace-command", str(BACKBONE), "submit", str(workbook), "--dataset", DATASET,
        "--period", period, "--replaces", replacement["id"],
    )  # fmt: skip
    assert json.loads(done.stdout)["row_count"] == ROWS
    assert submissions(service["engine"]) == before + 3
