"""Spending privacy budget knowingly (issue 14): previews of release requests (``dry_run``) and
an agreement's cap on the share of a period's budget one release may take."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from sqlalchemy import select

from aggregation.models import PrivacyBudget, PrivacyCharge, Release
from tests.agreements.helpers import amend

READINESS = "/v1/indicators/kindergarten-readiness/releases"
DISTRICT = "district-early-learning-outcomes"


def _body(dims: list[str], method: str = "differential_privacy", **extra: Any) -> dict[str, Any]:
    return {"dimensions": dims, "method": method, **extra}


def _preview(api, dims, method="differential_privacy", path=READINESS):
    return api.post(path, as_="backbone-manager", json=_body(dims, method, dry_run=True))


def _release(api, dims, method="differential_privacy", path=READINESS):
    return api.post(path, as_="backbone-manager", json=_body(dims, method))


def _state(session) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[str]]:
    """Every budget, charge and release, as stored (read through the test's own session)."""
    session.expire_all()
    budgets = [
        (b.agreement_id, b.dataset, b.period, b.epsilon_limit, b.epsilon_spent, b.updated_at)
        for b in session.scalars(select(PrivacyBudget).order_by(PrivacyBudget.agreement_id))
    ]
    charges = sorted(
        (c.agreement_id, c.dataset, c.period, c.epsilon, c.release_id)
        for c in session.scalars(select(PrivacyCharge))
    )
    releases = sorted(session.scalars(select(Release.id)))
    return budgets, charges, releases


def _events(api, action: str) -> list[dict[str, Any]]:
    return api.get(
        "/v1/audit/events", as_="county-auditor", params={"action": action, "limit": 1000}
    ).json()["items"]


def _problem(response) -> dict[str, Any]:
    """A problem document without what differs between two requests."""
    return {k: v for k, v in response.json().items() if k not in ("instance", "request_id")}


def test_a_preview_changes_nothing_and_matches_what_the_release_then_charges(api, session):
    before = _state(session)
    previews_before = len(_events(api, "release.preview"))
    r = _preview(api, ["school_year", "neighborhood"])
    assert r.status_code == 200, r.text
    preview = r.json()
    assert _state(session) == before  # no budget created or charged, no release, no charge
    assert preview["dry_run"] is True and preview["outcome"] == "compute"
    assert preview["method"] == "differential_privacy" and preview["epsilon"] == 1.0
    assert preview["agreements"] == [{"agreement": DISTRICT, "version": 1}]
    # One charge per school year of data the release covers (the dataset's declared periods),
    # each at the agreement's epsilon_per_release, from a fresh budget of epsilon_per_period.
    years = {c["period"] for c in preview["charges"]}
    assert len(years) == len(preview["charges"]) >= 5 and "2021-22" in years
    for c in preview["charges"]:
        assert (c["agreement"], c["dataset"]) == (DISTRICT, "kindergarten_readiness")
        assert c["epsilon"] == 1.0 and c["epsilon_limit"] == 4.0 and c["epsilon_spent"] == 0.0
        assert c["epsilon_remaining"] == 4.0 and c["epsilon_remaining_after"] == 3.0
        assert c["max_share_per_release"] is None  # the demo agreement sets no cap
    assert "epsilon 1" in preview["summary"]
    [event] = _events(api, "release.preview")[previews_before:]
    assert event["outcome"] == "succeeded" and event["decision"] == "permit"
    assert event["counts"]["budgets"] == len(preview["charges"])

    released = _release(api, ["school_year", "neighborhood"])
    assert released.status_code == 201, released.text
    release_id = released.headers["Location"].rsplit("/", 1)[-1]
    charged = sorted(
        (c.agreement_id, c.dataset, c.period, c.epsilon)
        for c in session.scalars(
            select(PrivacyCharge).where(PrivacyCharge.release_id == release_id)
        )
    )
    assert charged == sorted(
        (c["agreement"], c["dataset"], c["period"], c["epsilon"]) for c in preview["charges"]
    )
    budgets = {
        (b["dataset"], b["period"]): b
        for b in api.get("/v1/budgets", as_="backbone-manager").json()
    }
    for c in preview["charges"]:
        b = budgets[(c["dataset"], c["period"])]
        assert b["epsilon_remaining"] == c["epsilon_remaining_after"]
        assert b["epsilon_spent"] == c["epsilon_spent"] + c["epsilon"]

    # The same request again would return the stored release and spend nothing: so says the
    # preview, and so does the request.
    before = _state(session)
    again = _preview(api, ["school_year", "neighborhood"]).json()
    assert again["outcome"] == "stored" and again["stored_release"] == release_id
    assert again["charges"] == [] and again["epsilon"] is None
    assert _state(session) == before
    assert _release(api, ["school_year", "neighborhood"]).status_code == 200
    assert _state(session) == before

    # A second, different release: the preview now shows what the first one spent.
    second = _preview(api, ["school_year"]).json()
    assert {c["epsilon_spent"] for c in second["charges"]} == {1.0}
    assert {c["epsilon_remaining_after"] for c in second["charges"]} == {2.0}


def test_a_preview_reads_no_record_and_draws_no_noise(api, monkeypatch):
    from aggregation import releases
    from disclosure import dp

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a preview read records or computed a release")

    monkeypatch.setattr(releases, "load_frame", never)
    monkeypatch.setattr(releases, "protect_release", never)
    monkeypatch.setattr(dp, "release", never)
    assert _preview(api, ["neighborhood"]).status_code == 200
    assert _preview(api, ["race_ethnicity"], method="suppression").status_code == 200
    # The same patches make the real request fail: they are on its path.
    assert _release(api, ["neighborhood"]).status_code == 500


def test_a_suppressed_release_is_previewed_as_charging_no_budget(api, session):
    before = _state(session)
    r = _preview(api, ["race_ethnicity"], method="suppression")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "suppression" and body["outcome"] == "compute"
    assert body["charges"] == [] and body["epsilon"] is None
    assert "no privacy budget is charged" in body["summary"]
    # The demo has published this one: it would be returned as stored.
    seeded = _preview(api, ["school_year", "race_ethnicity"], method="suppression").json()
    assert seeded["outcome"] == "stored" and seeded["stored_release"] is not None
    assert _state(session) == before


def test_a_request_that_would_be_refused_is_refused_the_same_way_in_preview(api, session):
    before = _state(session)
    # The health agreement does not allow differential privacy: a policy denial.
    lbw = "/v1/indicators/low-birth-weight/releases"
    preview = _preview(api, ["birth_year"], path=lbw)
    real = _release(api, ["birth_year"], path=lbw)
    assert preview.status_code == real.status_code == 403
    assert _problem(preview) == _problem(real)
    assert preview.json()["type"] == "/problems/policy-denied"
    # An unknown dimension: the same 422.
    preview, real = _preview(api, ["shoe_size"]), _release(api, ["shoe_size"])
    assert preview.status_code == real.status_code == 422
    assert _problem(preview) == _problem(real)
    assert _state(session) == before
    refused = [e for e in _events(api, "release.preview") if e["outcome"] == "denied"]
    assert any(e["detail"] == "policy-denied" for e in refused)

    # An exhausted budget: the preview answers the ledger's refusal, with the same figures.
    for dims in (
        ["school_year"],
        ["neighborhood"],
        ["race_ethnicity"],
        ["school_year", "neighborhood"],
    ):
        assert _release(api, dims).status_code == 201
    before = _state(session)
    preview = _preview(api, ["school_year", "race_ethnicity"])
    assert _state(session) == before
    real = _release(api, ["school_year", "race_ethnicity"])
    assert preview.status_code == real.status_code == 403
    assert preview.json()["type"] == "/problems/privacy-budget-exhausted"
    assert _problem(preview) == _problem(real)
    assert _state(session) == before


def _district() -> dict[str, Any]:
    return yaml.safe_load((resources.files("demo") / "agreements" / "district.yaml").read_text())


DISTRICT_PARTIES = ("district-data-manager", "backbone-manager")


def _privacy(**terms: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        doc["disclosure"]["privacy"].update(terms)

    return change


def test_an_inconsistent_share_cap_is_refused_by_lint(api):
    document = _district()
    document["disclosure"]["privacy"]["max_share_per_release"] = 0.2  # 0.2 * 4 < 1
    r = api.post(
        "/v1/agreements/lint",
        as_="district-data-manager",
        content=yaml.safe_dump(document).encode(),
        headers={"Content-Type": "application/yaml"},
    )
    findings = r.json()["findings"]
    [finding] = [f for f in findings if f["path"] == "disclosure.privacy.max_share_per_release"]
    assert finding["code"] == "contradiction"
    assert "every release would be refused" in finding["message"]
    created = api.post(
        "/v1/agreements",
        as_="backbone-manager",
        content=yaml.safe_dump(document).encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert created.status_code == 422
    assert created.json()["type"] == "/problems/invalid-agreement"
    assert (
        api.get(f"/v1/agreements/{DISTRICT}", as_="backbone-manager").json()["versions"][-1][
            "version"
        ]
        == 1
    )


def _budgets(api) -> dict[str, tuple[float, float]]:
    listed = api.get("/v1/budgets", as_="district-data-manager").json()
    return {
        b["period"]: (b["epsilon_limit"], b["epsilon_spent"])
        for b in listed
        if b["agreement"] == DISTRICT and b["dataset"] == "kindergarten_readiness"
    }


def test_the_budgets_follow_the_agreement_version_in_force(api, session, clock):
    # The first release opens the budgets of every school year at the agreement's 4.0.
    assert _release(api, ["school_year"]).status_code == 201
    opened = _budgets(api)
    assert opened and all(v == (4.0, 1.0) for v in opened.values())

    # An amendment doubles the loss per release and the budget per period, capped at a quarter
    # of it (2.0 of 8.0): the budgets already open follow it, and so does the share.
    bigger = _privacy(epsilon_per_release=2.0, epsilon_per_period=8.0, max_share_per_release=0.25)
    clock.advance(seconds=1)
    assert amend(api, DISTRICT, bigger, DISTRICT_PARTIES) == 2
    assert all(v == (8.0, 1.0) for v in _budgets(api).values())  # listed as the next charge sees
    preview = _preview(api, ["neighborhood"]).json()
    assert {(c["epsilon"], c["epsilon_limit"]) for c in preview["charges"]} == {(2.0, 8.0)}
    assert {c["max_share_per_release"] for c in preview["charges"]} == {0.25}
    assert _release(api, ["neighborhood"]).status_code == 201
    assert all(v == (8.0, 3.0) for v in _budgets(api).values())

    # An amendment that lowers the budget below what is spent leaves every period exhausted:
    # the next release is refused, in preview too, and nothing is charged.
    smaller = _privacy(epsilon_per_release=1.0, epsilon_per_period=2.5, max_share_per_release=None)
    clock.advance(seconds=1)
    assert amend(api, DISTRICT, smaller, DISTRICT_PARTIES) == 3
    assert all(v == (3.0, 3.0) for v in _budgets(api).values())
    before = _state(session)
    preview = _preview(api, ["race_ethnicity"])
    real = _release(api, ["race_ethnicity"])
    assert preview.status_code == real.status_code == 403
    assert real.json()["type"] == "/problems/privacy-budget-exhausted"
    assert real.json()["budget"]["epsilon_limit"] == 3.0
    assert _problem(preview) == _problem(real)
    assert _state(session) == before


def test_the_term_is_in_the_json_schema_and_the_odrl_export(api, clock):
    schema = api.get("/v1/agreements/schema", as_="district-data-manager").json()
    text = str(schema)
    assert "max_share_per_release" in text
    clock.advance(seconds=1)
    version = amend(api, DISTRICT, _privacy(max_share_per_release=0.5), DISTRICT_PARTIES)
    odrl = api.get(f"/v1/agreements/{DISTRICT}/odrl", as_="district-data-manager").json()
    assert odrl["version"] == version
    [duty] = [o for o in odrl["obligation"] if o["uid"].endswith(":rule:disclosure-control")]
    constraints = {c["leftOperand"]: c for c in duty["constraint"]}
    assert constraints["maxSharePerRelease"]["rightOperand"] == 0.5
    assert constraints["epsilonPerRelease"]["rightOperand"] == 1.0
    assert constraints["epsilonPerPeriod"]["rightOperand"] == 4.0
    for c in duty["constraint"]:
        assert c["leftOperand"] in odrl["@context"]


def test_the_openapi_document_describes_the_preview(client):
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/v1/indicators/{indicator_id}/releases"]["post"]
    assert "dry_run" in doc["components"]["schemas"]["ReleaseIn"]["properties"]
    ok = str(op["responses"]["200"]["content"]["application/json"]["schema"])
    assert "ReleasePreviewOut" in ok and "ReleaseDocumentOut" in ok
    assert "201" in op["responses"]
    assert "charges" in doc["components"]["schemas"]["ReleasePreviewOut"]["properties"]
