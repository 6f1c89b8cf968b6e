"""The console pages added after the first round, in a real browser, with axe-core finding no
serious or critical violation on any of them: a data manager's webhooks (the list, the secret
shown once, a webhook's deliveries, the delete confirmation) and "what if" form with a decision;
partner staff's cancellation of a scheduled withdrawal; the analysts' publication page and its
publish-due confirmation; an administrator's client keys and token signing key pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from identity.people import totp_code
from tests.browser.conftest import axe_violations

pytestmark = pytest.mark.slow
# A public address written as an IP literal: accepted without a DNS lookup, never called here.
HOOK_URL = "https://93.184.216.34/backbone-events"


def _no_violations(page: Any) -> None:
    found = axe_violations(page)
    assert not found, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in found]


def _sign_in(page: Any, settings: Any, clock: Any, username: str, path: str) -> None:
    raw = json.loads((settings.data_dir / "demo-credentials.json").read_text())
    person = next(p for p in raw["people"] if p["username"] == username)
    page.goto(path)
    assert "/sign-in" in page.url
    page.fill("#username", person["username"])
    page.fill("#password", person["password"])
    page.fill("#code", totp_code(person["totp_secret"], clock()))
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith(path), page.url


def test_a_data_managers_webhooks_and_what_if(page: Any, settings: Any, clock: Any) -> None:
    _sign_in(page, settings, clock, "dana.district", "/console/webhooks")
    assert page.locator("h1").inner_text() == "Webhooks"
    _no_violations(page)
    page.fill("#url", HOOK_URL)
    page.fill("#description", "Our intake system")
    page.check("input[value='agreement.suspended']")
    page.click("#webhook-form button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#webhook-secret").inner_text().startswith("whsec_")
    _no_violations(page)
    page.click("text=The webhook and its deliveries")
    page.wait_for_load_state()
    assert "Nothing was sent to this webhook yet." in page.locator("#deliveries").inner_text()
    _no_violations(page)
    page.click("#delete-link")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Delete this webhook?"
    _no_violations(page)
    page.check("#confirm")
    page.click("#confirm-form button[type=submit]")
    page.wait_for_load_state()
    assert "The webhook is deleted" in page.locator("#done").inner_text()
    _no_violations(page)

    page.goto("/console/what-if")
    _no_violations(page)
    page.select_option("#action", "compute")
    page.select_option("#agreement", "district-early-learning-outcomes")
    page.fill("#datasets", "kindergarten_readiness")
    page.select_option("#geography", "address")
    page.click("#what-if-form button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#decision h2").inner_text().startswith("Denied")
    assert page.locator("#explanation").inner_text().startswith("Denied:")
    _no_violations(page)


def test_partner_staff_cancel_a_scheduled_withdrawal(
    page: Any, settings: Any, clock: Any, tmp_path: Path
) -> None:
    dataset = "kindergarten_readiness"
    _sign_in(page, settings, clock, "sam.sis", f"/console/datasets/{dataset}")
    with page.expect_download() as info:
        page.click("#template-link")
    template = tmp_path / "template.csv"
    info.value.save_as(str(template))
    page.set_input_files("#file", str(template))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#receipt")
    page.click("text=Withdraw this submission…")
    page.wait_for_load_state()
    page.click("#withdraw-form button[type=submit]")
    page.wait_for_load_state()
    page.click("#cancel-withdrawal")
    page.wait_for_load_state()
    assert "withdrawal.notice_days: 30" in page.locator("main").inner_text()
    _no_violations(page)
    page.click("#confirm-form button[type=submit]")
    page.wait_for_load_state()
    assert "The scheduled withdrawal is cancelled" in page.locator("main").inner_text()
    _no_violations(page)


def test_the_analysts_publication_pages(page: Any, settings: Any, clock: Any) -> None:
    _sign_in(page, settings, clock, "blake.backbone", "/console/publication")
    assert page.locator("h1").inner_text() == "Publication"
    _no_violations(page)
    page.click("#publish-due-link")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Publish the releases that are due?"
    _no_violations(page)
    page.check("#confirm")
    page.click("#confirm-form button[type=submit]")
    page.wait_for_load_state()
    assert "held release(s) published" in page.locator("#done").inner_text()
    _no_violations(page)


def test_an_administrators_key_pages(page: Any, settings: Any, clock: Any) -> None:
    _sign_in(page, settings, clock, "ada.admin", "/console/admin/clients/district-sis/keys")
    assert page.locator("h1").inner_text().startswith("Public keys of")
    _no_violations(page)
    page.goto("/console/admin/signing-key")
    _no_violations(page)
    page.check("#confirm")
    page.click("#confirm-form button[type=submit]")
    page.wait_for_load_state()
    assert "The signing key is rotated" in page.locator("#done").inner_text()
    _no_violations(page)
