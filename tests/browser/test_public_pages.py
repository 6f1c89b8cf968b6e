"""The public scorecard in a real browser: clicking through, gaps for withheld values, the
interval band of a differentially private release, nothing non-public reachable without
signing in, keyboard use, and axe-core with no serious or critical violation on any page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import axe_violations, screenshot

pytestmark = pytest.mark.slow

NON_PUBLIC = "low-birth-weight"
DP_INDICATOR = "chronic-absenteeism"


def _no_violations(page: Any) -> None:
    found = axe_violations(page)
    assert not found, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in found]


def test_click_from_the_scorecard_to_an_indicator(page: Any) -> None:
    page.goto("/")
    assert page.locator("h1").inner_text().endswith("community scorecard")
    screenshot(page, "scorecard")
    _no_violations(page)
    result = page.locator(".result-card h2 a").first
    title = result.inner_text()
    result.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == title
    # the result's curves, story, what works, partners and plan
    for heading in (
        "How we will know",
        "The story behind the curve",
        "What works",
        "Partners with a role",
        "Action plan",
    ):
        assert page.get_by_role("heading", name=heading, exact=True).count() == 1, heading
    assert page.locator("figure.chart svg[role=img]").count() >= 1
    _no_violations(page)
    indicator = page.locator("main h3 a").first
    name = indicator.inner_text()
    indicator.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == name
    chart = page.locator("figure.chart svg[role=img]").first
    assert len(chart.get_attribute("aria-label") or "") > 40
    assert page.locator("#series-table tbody tr").count() >= 2
    screenshot(page, "indicator")
    _no_violations(page)


def test_a_withheld_cell_is_a_gap_not_a_zero(page: Any) -> None:
    page.goto("/indicators/kindergarten-readiness")
    found = False
    for i in range(page.locator("section.breakdown").count()):
        section = page.locator("section.breakdown").nth(i)
        rows = section.locator("tbody tr")
        withheld = section.locator("tbody tr.withheld")
        if withheld.count() == 0:
            continue
        found = True
        for j in range(withheld.count()):
            # (the table may sit in a closed <details>: its text, not its rendering)
            assert withheld.nth(j).locator("td").first.text_content() == "Withheld"
        # one bar per published value; a withheld value has no bar (not a bar of zero), and
        # is labelled in the chart
        svg = section.locator("figure.chart svg")
        bars = svg.locator("g.mark-rect path")
        assert bars.count() == rows.count() - withheld.count()
        assert svg.locator("text", has_text="withheld").count() == withheld.count()
    assert found, "the demo should withhold at least one small cell"


def test_a_differentially_private_release_has_its_interval_band(page: Any) -> None:
    page.goto(f"/indicators/{DP_INDICATOR}")
    assert page.locator("figure.chart svg g.mark-area path").count() >= 1
    header = page.locator("#series-table thead").inner_text()
    assert "95% interval" in header
    assert re.search(r"\d%? to \d", page.locator("#series-table tbody").inner_text())
    assert "differentially private" in (
        page.locator("figure.chart svg").first.get_attribute("aria-label") or ""
    )
    _no_violations(page)


def test_nothing_non_public_is_reachable_without_signing_in(page: Any, client: Any) -> None:
    response = page.goto(f"/indicators/{NON_PUBLIC}")
    assert response is not None and response.status == 404
    _no_violations(page)
    assert page.goto(f"/embed/indicators/{NON_PUBLIC}").status == 404  # type: ignore[union-attr]
    assert page.goto(f"/charts/indicators/{NON_PUBLIC}.svg").status == 404  # type: ignore[union-attr]
    # the result page names the indicator but shows none of its values or releases
    page.goto("/")
    for i in range(page.locator(".result-card h2 a").count()):
        page.goto("/")
        page.locator(".result-card h2 a").nth(i).click()
        page.wait_for_load_state()
        html = page.content()
        assert f"/indicators/{NON_PUBLIC}" not in html
    # and the API gives the public no release of it
    assert client.get(f"/v1/indicators/{NON_PUBLIC}/series").status_code in (401, 403, 404)


def test_the_public_downloads_a_release_with_its_provenance(page: Any) -> None:
    page.goto("/indicators/kindergarten-readiness")
    link = page.get_by_role("link", name=re.compile(r"^CSV")).first
    href = link.get_attribute("href")
    assert href is not None
    answer = page.request.get(href)
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert page.locator("details.provenance").count() >= 1


def test_the_keyboard_reaches_the_content_first(page: Any) -> None:
    page.goto("/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused.strip() == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"


def test_every_page_passes_axe(page: Any) -> None:
    for path in ("/about", "/embed/indicators/kindergarten-readiness", "/results/nope"):
        page.goto(path)
        _no_violations(page)
