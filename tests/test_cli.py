"""The ``backbone`` command line: local lint, and the data manager's commands against a server."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_lint_clean_and_dirty(tmp_path: Path):
    good = resources.files("demo") / "agreements" / "health.yaml"
    r = runner.invoke(app, ["agreement", "lint", str(good)])
    assert r.exit_code == 0 and "lints clean" in r.output
    data = yaml.safe_load(good.read_text())
    data["disclosure"]["min_cell_size"] = 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    r = runner.invoke(app, ["agreement", "lint", str(bad)])
    assert r.exit_code == 1 and "k-below-floor" in r.output
    bad.write_text("uid: [")
    r = runner.invoke(app, ["agreement", "lint", str(bad)])
    assert r.exit_code == 1 and "syntax" in r.output


def test_data_manager_commands_against_a_running_service(live_server, settings, tmp_path: Path):
    creds = str(settings.data_dir / "demo-credentials.json")
    common = ["--url", live_server.url, "--credentials", creds]
    r = runner.invoke(
        app, ["agreement", "show", "health-birth-outcomes", *common, "--as", "health-data-manager"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["versions"][0]["status"] == "active"
    r = runner.invoke(
        app,
        ["agreement", "show", "health-birth-outcomes", *common, "--as", "district-data-manager"],
    )
    assert r.exit_code == 1 and "policy-denied" in r.output

    r = runner.invoke(
        app,
        [
            "indicator",
            "release",
            "kindergarten-enrollment",
            "--dimension",
            "school_year",
            *common,
            "--as",
            "backbone-manager",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "cells by status" in r.output
    # A preview prints what a release would charge, and charges nothing.
    preview = [
        "indicator",
        "release",
        "kindergarten-readiness",
        "--dimension",
        "neighborhood",
        "--method",
        "differential_privacy",
        "--dry-run",
        *common,
        "--as",
        "backbone-manager",
    ]
    r = runner.invoke(app, preview)
    assert r.exit_code == 0, r.output
    first = json.loads(r.output)
    assert first["dry_run"] is True and first["charges"]
    assert all(c["epsilon_remaining_after"] < c["epsilon_remaining"] for c in first["charges"])
    again = runner.invoke(app, preview)
    assert json.loads(again.output)["charges"] == first["charges"]
    r = runner.invoke(
        app,
        [
            "agreement",
            "status",
            "health-birth-outcomes",
            "suspend",
            "--reason",
            "review",
            *common,
            "--as",
            "health-data-manager",
        ],
    )
    assert r.exit_code == 0 and json.loads(r.output)["status"] == "suspended"
