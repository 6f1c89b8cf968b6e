"""The auditor's console in a real browser: sign in as the demo auditor (password and a TOTP
code), filter the access log, open the latest checkpoint, download the export and verify it with
the offline verifier ``backbone audit verify`` uses, look up an inclusion proof, sign out; and
axe-core with no serious or critical violation on any console page."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from audit.note import VerifierKey, read_checkpoint
from audit.verify import verify_export
from identity.people import totp_code
from tests.browser.conftest import axe_violations, screenshot

pytestmark = pytest.mark.slow


def _no_violations(page: Any) -> None:
    found = axe_violations(page)
    assert not found, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in found]


def _demo_auditor(settings: Any) -> dict[str, str]:
    raw = json.loads((settings.data_dir / "demo-credentials.json").read_text())
    person: dict[str, str] = next(p for p in raw["people"] if p["role"] == "auditor")
    return person


def _download(page: Any, selector: str, folder: Path) -> Path:
    with page.expect_download() as info:
        page.click(selector)
    download = info.value
    path = folder / download.suggested_filename
    download.save_as(str(path))
    return path


def test_the_auditor_signs_in_reads_verifies_and_signs_out(
    page: Any, settings: Any, clock: Any, tmp_path: Path
) -> None:
    auditor = _demo_auditor(settings)
    page.goto("/console/audit")
    # Not signed in: to the sign-in page, and back to the log afterwards.
    assert page.url.endswith("/sign-in?next=/console/audit")
    _no_violations(page)
    page.fill("#username", auditor["username"])
    page.fill("#password", auditor["password"])
    page.fill("#code", totp_code(auditor["totp_secret"], clock()))
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/console/audit"), page.url
    assert page.locator("h1").inner_text() == "The access log"
    assert "Avery Chen" in page.locator("header.site").inner_text()
    _no_violations(page)

    page.goto("/console")
    assert "Office of the County Auditor" in page.locator("main").inner_text()
    _no_violations(page)

    # Filter the log: the district's submissions that succeeded.
    page.click("text=The access log")
    page.fill("#organization", "district")
    page.fill("#action", "submission.*")
    page.select_option("#outcome", "succeeded")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert "organization=district" in page.url
    rows = page.locator("#events tbody tr")
    assert rows.count() >= 1
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td")
        assert cells.nth(2).inner_text() == "district"
        assert cells.nth(4).inner_text().startswith("submission.")
        assert cells.nth(6).inner_text() == "succeeded"
    screenshot(page, "console-auditor")
    _no_violations(page)

    # The latest checkpoint, and an export up to it, verified offline.
    page.goto("/console/audit/checkpoint")
    size = int(page.locator("#tree-size").inner_text())
    root = page.locator("#root-hash").inner_text()
    assert size > 0 and len(root) == 44
    command = page.locator("#verify-command").inner_text().strip()
    _no_violations(page)
    export = _download(page, "#download-export", tmp_path)
    note = _download(page, "#download-checkpoint", tmp_path)
    key = _download(page, "#download-key", tmp_path)
    assert command == (
        f"backbone audit verify {export.name} --checkpoint {note.name} --public-key {key.name}"
    )
    checkpoint = read_checkpoint(note.read_text(), VerifierKey.parse(key.read_text()))
    report = verify_export(export, [checkpoint])
    assert report.ok and report.entries == size, report.as_dict()

    # An inclusion proof of an event of the log.
    page.goto("/console/audit/proof")
    _no_violations(page)
    page.fill("#index", "5")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert re.search(r"Event 5 in the tree of size \d+", page.locator("main h2").inner_text())
    assert (
        "contains this event, as it is, at index 5" in page.locator("#what-it-proves").inner_text()
    )
    _no_violations(page)

    # Sign out: the console sends the browser to sign in again.
    page.click("header.site button:has-text('Sign out')")
    page.wait_for_load_state()
    assert "/sign-in" in page.url
    page.goto("/console/audit")
    assert "/sign-in?next=" in page.url
    assert page.locator("h1").inner_text() == "Sign in"
