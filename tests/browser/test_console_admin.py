"""The administrators' console in a real browser: sign in as ada.admin, create a client and read
its secret once, rotate it, disable it, create a person, sign out; sign in as that person with
the password and a TOTP code from the secret shown; axe-core with no serious or critical
violation on any page."""

from __future__ import annotations

import json
from typing import Any

import pytest

from identity.people import totp_code
from tests.browser.conftest import axe_violations, screenshot

pytestmark = pytest.mark.slow


def _no_violations(page: Any) -> None:
    found = axe_violations(page)
    assert not found, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in found]


def _demo_person(settings: Any, username: str) -> dict[str, str]:
    raw = json.loads((settings.data_dir / "demo-credentials.json").read_text())
    person: dict[str, str] = next(p for p in raw["people"] if p["username"] == username)
    return person


def _sign_in(page: Any, username: str, password: str, code: str) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.fill("#code", code)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_the_administrator_manages_clients_and_people(page: Any, settings: Any, clock: Any) -> None:
    ada = _demo_person(settings, "ada.admin")
    page.goto("/console/admin/clients")
    assert page.url.endswith("/sign-in?next=/console/admin/clients")
    _sign_in(page, ada["username"], ada["password"], totp_code(ada["totp_secret"], clock()))
    assert page.url.endswith("/console/admin/clients"), page.url
    assert page.locator("h1").inner_text() == "Clients"
    _no_violations(page)

    # Create a client: its secret is shown once.
    page.select_option("#client_org", "district")
    page.select_option("#client_role", "partner-system")
    page.fill("#client_name", "District roster sync")
    page.click("#client-form button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Client created"
    secret = page.locator("#client-secret").inner_text()
    assert secret and secret not in page.url
    assert "shown now and never again" in page.locator("main").inner_text()
    _no_violations(page)
    client_id = page.locator("#client code").first.inner_text()

    # Back to the list: the secret is not there.
    page.click("text=Back to the clients")
    page.wait_for_load_state()
    assert secret not in page.content()
    screenshot(page, "console-admin")

    # Rotate it: a new secret, shown once.
    page.click("button[aria-label='Rotate the secret of District roster sync']")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Client secret rotated"
    rotated = page.locator("#client-secret").inner_text()
    assert rotated and rotated != secret
    _no_violations(page)

    # Disable it, after a confirmation step.
    page.click("text=Back to the clients")
    page.wait_for_load_state()
    assert rotated not in page.content()
    page.click("a[aria-label='Disable District roster sync']")
    page.wait_for_load_state()
    assert page.url.endswith(f"/console/admin/clients/{client_id}/disable"), page.url
    assert page.locator("h1").inner_text() == "Disable District roster sync?"
    _no_violations(page)
    page.check("#confirm")
    page.click("#disable-form button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/console/admin/clients?done=client-disabled"), page.url
    assert "disabled" in page.locator("#done").inner_text()
    assert rotated not in page.content()

    # Organizations.
    page.goto("/console/admin/organizations")
    assert page.locator("h1").inner_text() == "Organizations"
    _no_violations(page)

    # Create a person: their password and TOTP secret are shown once.
    page.goto("/console/admin/people")
    assert page.locator("h1").inner_text() == "People"
    _no_violations(page)
    page.select_option("#person_org", "district")
    page.select_option("#person_role", "data-manager")
    page.fill("#person_username", "paz.partner")
    page.fill("#person_name", "Paz Ortega")
    page.click("#person-form button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Person created"
    password = page.locator("#person-password").inner_text()
    totp_secret = page.locator("#person-totp-secret").inner_text()
    assert page.locator("#person-totp-uri").inner_text().startswith("otpauth://totp/")
    _no_violations(page)

    # Sign out, and sign in as the new person with what was shown.
    page.click("header.site button:has-text('Sign out')")
    page.wait_for_load_state()
    page.goto("/console")
    assert "/sign-in" in page.url
    _sign_in(page, "paz.partner", password, totp_code(totp_secret, clock()))
    assert page.url.endswith("/console"), page.url
    assert "Paz Ortega" in page.locator("header.site").inner_text()
    # Not an administrator: the admin pages are refused.
    response = page.goto("/console/admin/people")
    assert response is not None and response.status == 403
    _no_violations(page)
