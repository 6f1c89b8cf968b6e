"""``backbone audit`` commands that run against the service's database, end to end."""

from __future__ import annotations

import base64

import pytest
from typer.testing import CliRunner

from audit.note import VerifierKey
from cli.audit import audit_app
from core.db import make_engine, make_session_factory
from core.settings import get_settings
from migrations.commands import upgrade
from tests.audit.helpers import add_events
from tests.conftest import MASTER


@pytest.fixture
def service_env(fresh_databases, tmp_path, monkeypatch):
    url = fresh_databases.url()
    upgrade(url)
    monkeypatch.setenv("BACKBONE_DATABASE_URL", url)
    monkeypatch.setenv("BACKBONE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv(
        "BACKBONE_MASTER_KEY", base64.urlsafe_b64encode(MASTER.raw).decode().rstrip("=")
    )
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_checkpoint_export_and_verify_from_the_command_line(service_env, tmp_path):
    runner = CliRunner()
    result = runner.invoke(audit_app, ["checkpoint"])
    assert result.exit_code == 2 and "empty" in result.output
    engine = make_engine(service_env)
    with make_session_factory(engine)() as s:
        add_events(s, 25, seed=41)
        s.commit()
    engine.dispose()

    result = runner.invoke(audit_app, ["checkpoint"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == "25"
    result = runner.invoke(audit_app, ["public-key"])
    assert result.exit_code == 0
    assert (
        VerifierKey.parse(result.output).public
        == MASTER.audit_signing_key().public_key().public_bytes_raw()
    )
    (tmp_path / "log.vkey").write_text(result.output)
    pem = runner.invoke(audit_app, ["public-key", "--format", "pem"]).output
    assert "BEGIN PUBLIC KEY" in pem

    out, cp = tmp_path / "audit.ndjson", tmp_path / "audit.checkpoint"
    result = runner.invoke(audit_app, ["export", "-o", str(out), "--checkpoint-out", str(cp)])
    assert result.exit_code == 0, result.output
    # The export is itself logged, so the next checkpoint is larger; this one matches the file.
    assert len(out.read_bytes().splitlines()) == 25
    result = runner.invoke(
        audit_app,
        ["verify", str(out), "--checkpoint", str(cp), "--public-key", str(tmp_path / "log.vkey")],
    )
    assert result.exit_code == 0, result.output
    csv_out = tmp_path / "audit.csv"
    result = runner.invoke(
        audit_app, ["export", "-o", str(csv_out), "--format", "csv", "--tree-size", "25"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        audit_app,
        [
            "verify",
            str(csv_out),
            "--checkpoint",
            str(cp),
            "--public-key",
            str(tmp_path / "log.vkey"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert runner.invoke(audit_app, ["export", "--format", "xml"]).exit_code == 2
    assert runner.invoke(audit_app, ["public-key", "--format", "jwk"]).exit_code == 2
