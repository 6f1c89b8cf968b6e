"""Partner staff's console in a real browser: sign in as the district's sam.sis (password and a
TOTP code), open a dataset, download its template, send a valid file built from it and read the
receipt, send a bad file and read the report (rows, fields, rules; no value), withdraw the
submission after reading the agreement's terms, sign out; and axe-core with no serious or
critical violation on any page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from identity.people import totp_code
from tests.browser.conftest import axe_violations, screenshot

pytestmark = pytest.mark.slow
DATASET = "kindergarten_readiness"
SECRET_VALUE = "Zebra-Secret-Value"


def _no_violations(page: Any) -> None:
    found = axe_violations(page)
    assert not found, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in found]


def _sam(settings: Any) -> dict[str, str]:
    raw = json.loads((settings.data_dir / "demo-credentials.json").read_text())
    person: dict[str, str] = next(p for p in raw["people"] if p["username"] == "sam.sis")
    return person


def test_partner_staff_send_a_file_read_the_receipt_and_the_report_and_withdraw(
    page: Any, settings: Any, clock: Any, tmp_path: Path
) -> None:
    sam = _sam(settings)
    page.goto("/console/datasets")
    assert "/sign-in?next=/console/datasets" in page.url
    page.fill("#username", sam["username"])
    page.fill("#password", sam["password"])
    page.fill("#code", totp_code(sam["totp_secret"], clock()))
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/console/datasets"), page.url
    assert page.locator("h1").inner_text() == "Datasets you send"
    _no_violations(page)

    page.click(f"a[href='/console/datasets/{DATASET}']")
    page.wait_for_load_state()
    assert page.locator("#fields tbody tr").count() >= 5
    _no_violations(page)

    # The template: the header and one made-up record that passes validation.
    with page.expect_download() as info:
        page.click("#template-link")
    template = tmp_path / "template.csv"
    info.value.save_as(str(template))
    header, _row = template.read_text().splitlines()[:2]
    assert "student_id" in header

    page.set_input_files("#file", str(template))
    screenshot(page, "console-staff")
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#receipt")
    assert "/console/submissions/sub_" in page.url
    receipt = page.locator("#receipt").inner_text()
    assert "Rows\t1" in receipt or "Rows 1" in receipt, receipt
    assert "Content hash" in receipt and "Audit log index" in receipt
    assert "The submission was received and stored." in page.locator("main").inner_text()
    _no_violations(page)
    receipt_url = page.url.split("?")[0]

    # A bad file: every cell of the record is wrong; the report names rows, fields and rules.
    page.goto(f"/console/datasets/{DATASET}")
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\n" + ",".join(SECRET_VALUE for _ in header.split(",")) + "\n")
    page.set_input_files("#file", str(bad))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#report")
    main = page.locator("main").inner_text()
    assert "The file was refused" in main
    assert SECRET_VALUE not in page.content()
    assert page.locator("#report tbody tr").count() >= 1
    _no_violations(page)

    # Withdraw, after reading the agreement's terms.
    page.goto(receipt_url)
    page.click("text=Withdraw this submission")
    page.wait_for_load_state()
    assert "notice_days: 30" in page.locator("main").inner_text()
    _no_violations(page)
    page.click("#withdraw-form button[type=submit]")
    page.wait_for_load_state()
    assert "The withdrawal was recorded." in page.locator("main").inner_text()
    assert "scheduled" in page.locator("#receipt").inner_text()
    _no_violations(page)

    page.goto("/console/submissions")
    assert page.locator("#submissions tbody tr").count() >= 1
    _no_violations(page)

    page.click("header.site button:has-text('Sign out')")
    page.wait_for_load_state()
    assert "/sign-in" in page.url
    page.goto("/console/submissions")
    assert "/sign-in?next=" in page.url
