"""The backbone analysts' console in a real browser: sign in as blake.backbone, check a
definition and read the reason it is refused, request a cheap release (kindergartners assessed by
school year) after its preview, follow the job's page until it shows the release, add a story
behind a result's curve, sign out; and axe-core with no serious or critical violation on any
page."""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

import pytest
import yaml

from identity.people import totp_code
from tests.browser.conftest import axe_violations, screenshot

pytestmark = pytest.mark.slow


def _no_violations(page: Any) -> None:
    found = axe_violations(page)
    assert not found, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in found]


def _demo_analyst(settings: Any) -> dict[str, str]:
    raw = json.loads((settings.data_dir / "demo-credentials.json").read_text())
    person: dict[str, str] = next(p for p in raw["people"] if p["username"] == "blake.backbone")
    return person


def _denied_definition() -> str:
    """Low birth weight published to the public, which the health agreement does not allow."""
    text = (resources.files("demo") / "indicators" / "indicators.yaml").read_text()
    births = next(i for i in yaml.safe_load(text) if i["id"] == "low-birth-weight")
    births = {
        **births,
        "id": "births-for-everyone",
        "recipients": [*births["recipients"], "public"],
    }
    return yaml.safe_dump(births, sort_keys=False)


def test_the_analyst_checks_a_definition_requests_a_release_and_writes_a_story(
    page: Any, settings: Any, clock: Any
) -> None:
    analyst = _demo_analyst(settings)
    page.goto("/console/indicators")
    assert page.url.endswith("/sign-in?next=/console/indicators")
    page.fill("#username", analyst["username"])
    page.fill("#password", analyst["password"])
    page.fill("#code", totp_code(analyst["totp_secret"], clock()))
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/console/indicators"), page.url
    assert page.locator("h1").inner_text() == "Indicators"
    assert "Blake Osei" in page.locator("header.site").inner_text()
    assert page.locator("#indicators tbody tr").count() >= 5
    _no_violations(page)

    # Define: from a template, checked (permitted, nothing saved); then a refused one.
    page.click("text=Define an indicator")
    page.wait_for_load_state()
    _no_violations(page)
    page.select_option("#template", "kindergarten-enrollment")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert "kindergarten-enrollment-new" in page.locator("#definition").input_value()
    page.click("#check")
    page.wait_for_load_state()
    assert page.locator("#decision h2").inner_text() == "Permitted by the agreements"
    assert "Nothing is saved yet" in page.locator("#check-note").inner_text()
    _no_violations(page)
    page.fill("#definition", _denied_definition())
    page.click("#check")
    page.wait_for_load_state()
    assert page.locator("#decision h2").inner_text() == "Denied by the agreements"
    failed = page.locator("#failed-constraints tbody").inner_text()
    assert "health-birth-outcomes" in failed and "recipient" in failed
    screenshot(page, "console-analyst")
    _no_violations(page)

    # Request a release: its preview, then confirm, and follow the job to the release.
    page.goto("/console/indicators/kindergarten-enrollment")
    _no_violations(page)
    page.uncheck("#dim-neighborhood")
    page.click("#preview")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Release preview"
    summary = page.locator("#summary").inner_text()
    assert "suppression" in summary or "stored" in summary, summary
    _no_violations(page)
    page.click("#confirm")
    page.wait_for_load_state()
    deadline = time.monotonic() + 60
    while "/console/jobs/" in page.url and page.locator("#release, #problem").count() == 0:
        assert time.monotonic() < deadline, "the job did not finish"
        page.wait_for_timeout(500)  # the page refreshes itself every 2 seconds while active
    if "/console/jobs/" in page.url:
        assert page.locator("#release-state").inner_text() == "published"
    else:  # the same release was stored already: the indicator's page lists it
        assert page.locator("#stored").count() == 1
    _no_violations(page)

    # A story behind the curve of a result.
    page.goto("/console/results")
    _no_violations(page)
    page.click("text=Children enter kindergarten ready to learn")
    page.wait_for_load_state()
    _no_violations(page)
    page.fill("#story-title", "Kindergartners assessed, year by year")
    page.fill("#story-body", "More kindergartners were assessed after the district's outreach.")
    page.select_option("#story-indicator", "kindergarten-enrollment")
    page.click("#add-story-button")
    page.wait_for_load_state()
    titles = page.locator("article.story h3").all_inner_texts()
    assert "Kindergartners assessed, year by year" in titles, titles
    _no_violations(page)

    # Sign out.
    page.click("header.site button:has-text('Sign out')")
    page.wait_for_load_state()
    assert "/sign-in" in page.url
    page.goto("/console/indicators")
    assert "/sign-in?next=" in page.url
