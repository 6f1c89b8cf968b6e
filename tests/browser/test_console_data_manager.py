"""The data managers' console in a real browser: the backbone drafts a new version of the health
agreement through the API; the health department's data manager signs in (password and a TOTP
code), reads the draft in plain language, opens the diff, approves the exact content hash and
sees it approved; reviews the held release the health agreement's "no surprises" clause made and
approves it; reads the privacy budgets; signs out. axe-core finds no serious or critical
violation on any page."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from identity.people import totp_code
from tests.browser.conftest import axe_violations, screenshot
from tests.conftest import Api

pytestmark = pytest.mark.slow
HEALTH = "health-birth-outcomes"


def _no_violations(page: Any) -> None:
    found = axe_violations(page)
    assert not found, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in found]


def _person(settings: Any, username: str) -> dict[str, str]:
    raw = json.loads((settings.data_dir / "demo-credentials.json").read_text())
    person: dict[str, str] = next(p for p in raw["people"] if p["username"] == username)
    return person


@pytest.fixture
def live_api(live_server: Any, demo_credentials: dict[str, Any]) -> Iterator[Api]:
    """The API of the server the browser uses, called as the demo's clients."""
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        yield Api(http, demo_credentials)  # type: ignore[arg-type]


def _draft_new_version(api: Api) -> dict[str, Any]:
    shown = api.get(f"/v1/agreements/{HEALTH}/versions/1", as_="backbone-manager").json()
    doc = copy.deepcopy(shown["document"])
    doc["disclosure"]["min_cell_size"] = 20
    r = api.post(
        "/v1/agreements",
        as_="backbone-manager",
        content=yaml.safe_dump(doc).encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 201, r.text
    drafted: dict[str, Any] = r.json()
    return drafted


def _held_release(api: Api) -> dict[str, Any]:
    r = api.post(
        "/v1/indicators/low-birth-weight/releases",
        as_="backbone-manager",
        json={"dimensions": ["birth_year"]},
    )
    assert r.status_code == 202, r.text
    held: dict[str, Any] = r.json()
    return held


def test_a_data_manager_reads_compares_approves_reviews_and_signs_out(
    page: Any, settings: Any, clock: Any, live_api: Api
) -> None:
    drafted = _draft_new_version(live_api)
    held = _held_release(live_api)
    hector = _person(settings, "hector.health")

    page.goto("/console/agreements")
    assert page.url.endswith("/sign-in?next=/console/agreements")
    page.fill("#username", hector["username"])
    page.fill("#password", hector["password"])
    page.fill("#code", totp_code(hector["totp_secret"], clock()))
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/console/agreements"), page.url
    assert page.locator("h1").inner_text() == "Your agreements"
    rows = page.locator("#agreements tbody tr")
    assert rows.count() == 1 and HEALTH in rows.first.inner_text()
    _no_violations(page)

    # The new draft in plain language, beside its hash, lint findings and approvals.
    page.click(f"a[href='/console/agreements/{HEALTH}']")
    page.wait_for_load_state()
    assert page.locator("#shown-version").inner_text() == str(drafted["version"])
    assert page.locator("#shown-status").inner_text() in ("draft", "proposed")
    main = page.locator("main").inner_text()
    assert "No published cell may count fewer than 20 people." in main
    assert "have 10 day(s) to approve or object" in main
    assert page.locator("#content-hash").inner_text() == drafted["content_hash"]
    screenshot(page, "console-data-manager")
    _no_violations(page)

    # What changed since version 1.
    page.click("#diff-link")
    page.wait_for_load_state()
    removed = page.locator("#diff tr.removed")
    added = page.locator("#diff tr.added")
    assert removed.count() >= 1 and added.count() >= 1
    assert "min_cell_size: 11" in removed.first.inner_text()
    assert "removed" in removed.first.inner_text()
    assert "min_cell_size: 20" in added.first.inner_text()
    _no_violations(page)

    # Approve exactly what was read.
    page.go_back()
    page.wait_for_load_state()
    page.click("#approve-form button[type=submit]")
    page.wait_for_load_state()
    assert "approval of this version is recorded" in page.locator("#done").inner_text()
    assert "health" in page.locator("#approved-by").inner_text()
    _no_violations(page)
    shown = live_api.get(
        f"/v1/agreements/{HEALTH}/versions/{drafted['version']}", as_="health-data-manager"
    ).json()
    assert "health" in shown["approved_by"]

    # The release the health agreement held for review.
    page.goto("/console")
    page.click("text=Releases to review")
    page.wait_for_load_state()
    assert held["id"] in page.locator("#reviews").inner_text()
    _no_violations(page)
    page.click(f"a[href='/console/reviews/{held['id']}']")
    page.wait_for_load_state()
    assert page.locator("#cells tbody tr").count() >= 1
    assert page.locator("#release-state").inner_text() == "pending review"
    _no_violations(page)
    page.click("#approve-release button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#release-state").inner_text() == "published"
    _no_violations(page)

    page.goto("/console/budgets")
    assert page.locator("h1").inner_text() == "Privacy budgets"
    _no_violations(page)

    page.goto(f"/console/agreements/{HEALTH}/terminate")
    assert "cannot be undone" in page.locator("main").inner_text()
    _no_violations(page)

    page.click("header.site button:has-text('Sign out')")
    page.wait_for_load_state()
    assert "/sign-in" in page.url
    page.goto("/console/agreements")
    assert "/sign-in?next=" in page.url
