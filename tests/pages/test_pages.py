"""The public pages over HTTP (without a browser): what they show the public, what they never
show, the audit events they leave, their headers, and that nothing is fetched from elsewhere."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select

from aggregation.models import Release
from audit.models import AuditEvent
from policy.model import PUBLIC

PUBLIC_PAGES = (
    "/",
    "/about",
    "/indicators/kindergarten-readiness",
    "/indicators/chronic-absenteeism",
    "/embed/indicators/kindergarten-readiness",
)


def _results(api: Any) -> list[str]:
    page = api.client.get("/").text
    return sorted(set(re.findall(r'href="/results/([a-z0-9-]+)"', page)))


def _public_events(session: Any) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.organization_id == PUBLIC)
        )
    )


def test_the_scorecard_lists_the_public_results_and_their_indicators(api: Any) -> None:
    r = api.client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "<h1>Riverton Children&#39;s Collaborative: community scorecard</h1>" in html
    assert len(_results(api)) == 2
    assert 'href="/indicators/kindergarten-readiness"' in html
    # a result's indicator not published to the public is not told of (as the API does not)
    assert "Low birth weight rate" not in html
    assert "low-birth-weight" not in html


def test_every_page_is_self_contained(api: Any) -> None:
    for path in (*PUBLIC_PAGES, *(f"/results/{r}" for r in _results(api))):
        r = api.client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "style-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        # nothing is loaded from another origin: no script at all, styles and icons from here
        assert "<script" not in r.text
        for url in re.findall(r'(?:src|href)="([^"]+)"', r.text):
            if url.startswith("http"):
                # only links people follow (evidence, the embed's own address), never an asset
                assert not re.search(r"\.(css|js|woff2?|png|svg)$", url), (path, url)
    assert api.client.get("/static/site.css").status_code == 200


def test_only_the_embed_may_be_framed(api: Any) -> None:
    assert (
        "frame-ancestors *"
        in api.client.get("/embed/indicators/kindergarten-readiness").headers[
            "content-security-policy"
        ]
    )
    assert "frame-ancestors 'none'" in api.client.get("/").headers["content-security-policy"]


def test_non_public_indicators_are_not_found(api: Any, session: Any) -> None:
    for path in (
        "/indicators/low-birth-weight",
        "/indicators/readiness-after-prek",
        "/embed/indicators/low-birth-weight",
        "/charts/indicators/low-birth-weight.svg",
        "/indicators/no-such-indicator",
        "/results/no-such-result",
    ):
        r = api.client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html")


def test_no_page_names_a_release_the_public_may_not_read(api: Any, session: Any) -> None:
    hidden = [
        r.id
        for r in session.scalars(select(Release))
        if PUBLIC not in r.recipients or r.state != "published"
    ]
    assert hidden
    pages = [*PUBLIC_PAGES, *(f"/results/{r}" for r in _results(api))]
    for path in pages:
        text = api.client.get(path).text
        for release_id in hidden:
            assert release_id not in text, (path, release_id)


def test_a_page_view_is_audited_as_the_public(api: Any, session: Any) -> None:
    before = _public_events(session)
    assert api.client.get("/indicators/kindergarten-readiness").status_code == 200
    after = _public_events(session)
    # the series, and each release shown in a breakdown or offered for download
    assert after - before >= 3


def test_the_chart_is_an_accessible_svg(api: Any) -> None:
    r = api.client.get("/charts/indicators/kindergarten-readiness.svg")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.text.startswith('<svg role="img" aria-label="Kindergarten readiness rate')
    page = api.client.get("/indicators/kindergarten-readiness").text
    # the text alternative and the data table are on the page with the chart
    assert 'id="series-table"' in page and "<caption>" in page


def test_a_withheld_value_is_never_shown_as_zero(api: Any) -> None:
    page = api.client.get("/indicators/kindergarten-readiness").text
    rows = re.findall(
        r'<tr class="withheld">\s*<th scope="row">[^<]*</th>\s*<td>([^<]*)</td>', page
    )
    assert rows, "the demo withholds small cells"
    assert set(rows) == {"Withheld"}


def test_the_download_links_answer_without_a_token(api: Any) -> None:
    page = api.client.get("/indicators/kindergarten-readiness").text
    links = re.findall(r'href="(/v1/releases/[^"?]+\?format=(?:csv|sdmx|json))"', page)
    assert links
    kinds = {}
    for link in links[:3]:
        r = api.client.get(link)
        assert r.status_code == 200, (link, r.text)
        kinds[link.rsplit("=", 1)[1]] = r.headers["content-type"]
    assert kinds["csv"].startswith("text/csv")
    assert kinds["sdmx"].startswith("application/vnd.sdmx.data+csv")
    assert kinds["json"].startswith("application/json")


def test_no_template_has_an_inline_style_or_script() -> None:
    # The pages' Content-Security-Policy allows styles and scripts of /static only: an inline
    # style or script would be silently ignored by the browser, so none may be written.
    from pathlib import Path

    templates = Path(__file__).resolve().parents[2] / "api" / "pages" / "templates"
    found = []
    for path in templates.rglob("*.html"):
        text = path.read_text()
        # a script is a file of /static (progressive enhancement), never inline
        inline_script = r"<script\b(?![^>]*\ssrc=)"
        for pattern in (r"<style\b", inline_script, r"<[a-zA-Z][^<>]*\sstyle=", r"\son[a-z]+="):
            if re.search(pattern, text):
                found.append((path.relative_to(templates).as_posix(), pattern))
    assert not found
