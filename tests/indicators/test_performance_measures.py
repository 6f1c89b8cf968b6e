"""Performance measures of partners' programs (Results-Based Accountability): the definition's
``performance`` block and its checks, the peer-learning purpose kept at definition and at
release, and ``GET /v1/performance-measures`` as the program's organization, as a peer the
agreement shares a measure with, and as an organization shown nothing.

The demo's early-learning network runs a pre-K program (``network-prek``) with three
measures: children served (how much, shared with the district for peer learning), regular
attendance (how well, the network and the backbone only) and kindergarten readiness after
pre-K (better off, also read by the district, which provides the kindergarten records)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.agreements.helpers import amend

PROGRAM = "network-prek"
HOW_MUCH, HOW_WELL, BETTER_OFF = (
    "prek-children-served",
    "prek-regular-attendance",
    "readiness-after-prek",
)
EARLY_LEARNING = "early-learning-enrollment"
EARLY_LEARNING_PARTIES = ("elnet-data-manager", "backbone-manager")


@pytest.fixture
def elnet(api: Any) -> str:
    """A dashboard of the early-learning network (the demo gives it none that reads)."""
    r = api.post(
        "/v1/clients",
        as_="backbone-admin",
        json={"organization": "early-learning", "name": "network dashboard", "role": "dashboard"},
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    api.credentials = {**api.credentials, issued["client_id"]: issued}
    client_id: str = issued["client_id"]
    return client_id


def _measures(api: Any, as_: str, **params: str) -> list[dict[str, Any]]:
    r = api.get("/v1/performance-measures", as_=as_, params=params)
    assert r.status_code == 200, r.text
    body: list[dict[str, Any]] = r.json()
    return body


def _events(api: Any, client: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get(
        "/v1/audit/events",
        as_="county-auditor",
        params={"client": client, "action": "release.read", "limit": 1000},
    ).json()["items"]
    return items


def _measure(**changes: Any) -> dict[str, Any]:
    """A how-much measure of the network's pre-K program, for the network and the backbone."""
    definition: dict[str, Any] = {
        "id": "prek-served-test",
        "title": "Children served",
        "unit": "count",
        "purpose": "bb:ProgramEvaluation",
        "recipients": ["early-learning", "backbone"],
        "numerator": {"dataset": "prek_enrollment"},
        "dimensions": ["school_year", "program_type"],
        "period_dimension": "school_year",
        "performance": {
            "program": PROGRAM,
            "program_title": "Network pre-K",
            "organization": "early-learning",
            "question": "how_much",
        },
    }
    definition.update(changes)
    return definition


def _performance(**changes: Any) -> dict[str, Any]:
    block: dict[str, Any] = _measure()["performance"]
    return {**block, **changes}


def _define(api: Any, definition: dict[str, Any]) -> Any:
    return api.post("/v1/indicators", as_="backbone-manager", json=definition)


def _refused(r: Any, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == f"/problems/{kind}"
    return body


# -- reading -------------------------------------------------------------------------------


def test_the_program_sees_its_measures_by_question(api, elnet):
    measures = _measures(api, elnet)
    assert [(m["id"], m["question"]) for m in measures] == [
        (HOW_MUCH, "how_much"),
        (HOW_WELL, "how_well"),
        (BETTER_OFF, "better_off"),
    ]
    for m in measures:
        assert m["program"] == PROGRAM and m["program_title"] == "Network pre-K"
        assert m["organization"] == "early-learning"
        assert m["series"]["indicator"] == m["id"] and m["series"]["releases"]
    served, attending, ready = measures
    assert served["unit"] == "count" and attending["unit"] == ready["unit"] == "percent"
    values = [p["value"] for p in attending["series"]["points"] if p["value"] is not None]
    # The demo's children attend regularly at a realistic rate.
    assert values and all(60 <= v <= 85 for v in values)
    counted = [p["value"] for p in served["series"]["points"] if p["value"] is not None]
    assert counted and all(v > 100 for v in counted)


def test_a_peer_sees_only_what_the_agreement_shares_for_peer_learning(api):
    measures = _measures(api, "district-dashboard")
    ids = [m["id"] for m in measures]
    # Children served is shared with the district for peer learning; readiness after pre-K
    # counts the district's own kindergartners. Regular attendance stays with the network.
    assert ids == [HOW_MUCH, BETTER_OFF]
    # Reading the measure that is not shared gets the existing denial.
    _refused(
        api.get(f"/v1/indicators/{HOW_WELL}/series", as_="district-dashboard"),
        403,
        "policy-denied",
    )
    held = api.get(f"/v1/indicators/{HOW_WELL}/releases", as_="backbone-dashboard").json()
    _refused(
        api.get(f"/v1/releases/{held[0]['id']}", as_="district-dashboard"), 403, "policy-denied"
    )


def test_an_organization_shown_nothing_gets_an_empty_list_and_an_audit_event(api):
    assert _measures(api, "health-dashboard") == []
    listed = [
        e for e in _events(api, "health-dashboard") if e["resource_type"] == "performance_measures"
    ]
    assert len(listed) == 1 and listed[0]["counts"] == {"measures": 0, "withheld": 0}
    assert listed[0]["organization"] == "health" and listed[0]["outcome"] == "succeeded"


def test_every_series_read_and_the_listing_are_audited(api):
    before = {e["index"] for e in _events(api, "district-dashboard")}
    _measures(api, "district-dashboard")
    new = [e for e in _events(api, "district-dashboard") if e["index"] not in before]
    series = sorted(e["resource_id"] for e in new if e["resource_type"] == "indicator_series")
    assert series == sorted([HOW_MUCH, BETTER_OFF])
    assert all(
        e["outcome"] == "succeeded" and e["decision"] == "permit"
        for e in new
        if e["resource_type"] == "indicator_series"
    )
    listing = [e for e in new if e["resource_type"] == "performance_measures"]
    assert len(listing) == 1 and listing[0]["counts"] == {"measures": 2, "withheld": 0}
    # Nothing about the measure the district may not read.
    assert HOW_WELL not in str(new)


def test_measures_are_grouped_by_program_then_question(api):
    # A second program, run by the district over its own kindergarten records.
    def transition(question: str) -> dict[str, Any]:
        return _performance(
            program="kinder-transition",
            program_title="Kindergarten transition",
            organization="district",
            question=question,
        )

    common = {"recipients": ["district", "backbone"], "dimensions": ["school_year"]}
    ready = _measure(
        id="kinder-ready-test",
        title="Kindergartners ready",
        unit="percent",
        numerator={"dataset": "kindergarten_readiness", "filter": "ready"},
        denominator={"dataset": "kindergarten_readiness"},
        performance=transition("better_off"),
        **common,
    )
    served = _measure(
        id="kinder-served-test",
        title="Kindergartners assessed",
        numerator={"dataset": "kindergarten_readiness"},
        performance=transition("how_much"),
        **common,
    )
    # Defined better-off first: the listing orders by question, not by definition.
    for definition in (ready, served):
        assert _define(api, definition).status_code == 201
    for indicator in ("kinder-ready-test", "kinder-served-test"):
        r = api.post(f"/v1/indicators/{indicator}/releases", as_="backbone-manager", json={})
        assert r.status_code == 201, r.text
    listed = [(m["program"], m["id"]) for m in _measures(api, "backbone-dashboard")]
    assert listed == [
        ("kinder-transition", "kinder-served-test"),
        ("kinder-transition", "kinder-ready-test"),
        (PROGRAM, HOW_MUCH),
        (PROGRAM, HOW_WELL),
        (PROGRAM, BETTER_OFF),
    ]
    # The district sees its own program, and the network's measures shared with it.
    assert [m["id"] for m in _measures(api, "district-dashboard")] == [
        "kinder-served-test",
        "kinder-ready-test",
        HOW_MUCH,
        BETTER_OFF,
    ]
    assert [m["id"] for m in _measures(api, "district-dashboard", organization="district")] == [
        "kinder-served-test",
        "kinder-ready-test",
    ]


def test_filters_by_program_and_organization(api, elnet):
    assert len(_measures(api, elnet, program=PROGRAM)) == 3
    assert len(_measures(api, elnet, organization="early-learning")) == 3
    assert _measures(api, elnet, program="tutoring") == []
    assert _measures(api, elnet, organization="district") == []
    assert [m["id"] for m in _measures(api, "district-dashboard", program=PROGRAM)] == [
        HOW_MUCH,
        BETTER_OFF,
    ]


@pytest.mark.parametrize(
    "params", [{"program": "Not A Slug!"}, {"organization": "x" * 65}, {"program": ""}]
)
def test_bad_filters_are_refused(api, params):
    _refused(
        api.get("/v1/performance-measures", as_="district-dashboard", params=params),
        422,
        "validation-error",
    )


def test_the_listing_needs_the_indicators_read_scope(api):
    _refused(
        api.get("/v1/performance-measures", as_="elnet-data-manager"), 403, "insufficient-scope"
    )


def test_a_measure_the_agreements_no_longer_let_the_caller_read_is_left_out(api):
    r = api.post(
        f"/v1/agreements/{EARLY_LEARNING}/suspend",
        as_="elnet-data-manager",
        json={"reason": "consent review"},
    )
    assert r.status_code == 200, r.text
    # Every pre-K measure counts the network's records: none is readable while suspended.
    assert _measures(api, "district-dashboard") == []
    listing = [
        e
        for e in _events(api, "district-dashboard")
        if e["resource_type"] == "performance_measures"
    ]
    assert listing[-1]["counts"] == {"measures": 0, "withheld": 2}


def test_an_indicator_shows_its_performance_block(api):
    body = api.get(f"/v1/indicators/{HOW_MUCH}", as_="district-dashboard").json()
    assert body["performance"] == {
        "program": PROGRAM,
        "program_title": "Network pre-K",
        "organization": "early-learning",
        "question": "how_much",
    }
    assert body["purpose"] == "bb:PeerLearning"
    assert (
        "performance"
        not in api.get("/v1/indicators/kindergarten-readiness", as_="district-dashboard").json()
    )


# -- defining ------------------------------------------------------------------------------


def test_a_measure_for_the_program_and_the_backbone_is_defined_and_released(api, elnet):
    r = _define(api, _measure())
    assert r.status_code == 201, r.text
    assert r.json()["performance"]["question"] == "how_much"
    r = api.post("/v1/indicators/prek-served-test/releases", as_="backbone-manager", json={})
    assert r.status_code == 201, r.text
    assert "prek-served-test" in [m["id"] for m in _measures(api, elnet)]
    assert "prek-served-test" not in [m["id"] for m in _measures(api, "district-dashboard")]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"performance": _performance(organization="tutoring-club")}, "not known"),
        # The health department provides no record the measure counts.
        (
            {
                "performance": _performance(organization="health"),
                "recipients": ["health", "early-learning", "backbone"],
            },
            "own records",
        ),
        ({"recipients": ["backbone"]}, "among the measure's recipients"),
        # Shown to a peer for program evaluation: the purpose must say peer learning, though
        # the agreement's program-evaluation permission names the district.
        ({"recipients": ["early-learning", "district", "backbone"]}, "bb:PeerLearning"),
    ],
)
def test_definitions_that_break_the_measure_rules_are_refused(api, changes, says):
    body = _refused(_define(api, _measure(**changes)), 422, "invalid-indicator")
    assert says in body["detail"]
    assert api.get("/v1/indicators/prek-served-test", as_="backbone-manager").status_code == 404


@pytest.mark.parametrize(
    "changes",
    [
        {"unit": "percent", "denominator": {"dataset": "prek_enrollment"}},  # how much is a count
        {"performance": _performance(question="how_well")},  # how well is a rate
        {  # better off is a count or a rate, not a mean
            "performance": _performance(question="better_off"),
            "unit": "mean",
            "method": "differential_privacy",
            "value_field": "days_attended",
        },
        {"performance": _performance(question="how_many")},
        {"performance": _performance(program="Pre K!")},
        {"performance": _performance(program_title="")},
        {"performance": {**_performance(), "budget": 100}},
        {"period_dimension": None},  # a measure is followed over time
    ],
)
def test_malformed_measures_are_refused(api, changes):
    definition = {k: v for k, v in _measure(**changes).items() if v is not None}
    _refused(_define(api, definition), 422, "validation-error")


def test_better_off_may_be_a_count_and_how_well_a_rate(api):
    better_off = _measure(id="prek-counted", performance=_performance(question="better_off"))
    assert _define(api, better_off).status_code == 201
    how_well = _measure(
        id="prek-regular",
        unit="percent",
        numerator={"dataset": "prek_enrollment", "filter": "regular_attendance"},
        denominator={"dataset": "prek_enrollment"},
        performance=_performance(question="how_well"),
    )
    assert _define(api, how_well).status_code == 201


# -- the peer-learning term ------------------------------------------------------------------


def _peer_measure(**changes: Any) -> dict[str, Any]:
    """The how-much measure shared with the district for peer learning."""
    peers = {"purpose": "bb:PeerLearning", "recipients": ["early-learning", "district", "backbone"]}
    return _measure(**{**peers, **changes})


def test_peer_learning_beyond_what_the_agreement_permits_is_refused_at_definition(api):
    # The permission names the district, not the health department.
    r = _define(api, _peer_measure(recipients=["early-learning", "health", "backbone"]))
    body = _refused(r, 403, "policy-denied")
    failed = {(f["rule"], f["left_operand"]) for f in body["decision"]["failed_constraints"]}
    assert ("compare-enrollment-with-peers", "recipient") in failed
    # Nor neighborhoods: only school years and program types are compared.
    r = _define(api, _peer_measure(dimensions=["school_year", "neighborhood"]))
    _refused(r, 403, "policy-denied")
    refused = [
        e
        for e in api.get(
            "/v1/audit/events",
            as_="county-auditor",
            params={"client": "backbone-manager", "action": "indicator.define", "limit": 1000},
        ).json()["items"]
        if e["outcome"] == "denied"
    ]
    assert len(refused) >= 2 and refused[-1]["decision"] == "deny"


def test_an_agreement_without_the_peer_learning_permission_refuses_it(api):
    def without_peers(doc: dict[str, Any]) -> None:
        doc["rules"]["permission"] = [
            r for r in doc["rules"]["permission"] if r["id"] != "compare-enrollment-with-peers"
        ]

    amend(api, EARLY_LEARNING, without_peers, EARLY_LEARNING_PARTIES)
    body = _refused(_define(api, _peer_measure()), 403, "policy-denied")
    failed = {f["left_operand"] for f in body["decision"]["failed_constraints"]}
    assert "purpose" in failed


def test_peer_learning_withdrawn_after_definition_is_refused_at_release(api):
    assert _define(api, _peer_measure()).status_code == 201
    release = {"dimensions": ["school_year"]}
    r = api.post("/v1/indicators/prek-served-test/releases", as_="backbone-manager", json=release)
    assert r.status_code == 201, r.text
    assert "prek-served-test" in [m["id"] for m in _measures(api, "district-dashboard")]

    def without_peers(doc: dict[str, Any]) -> None:
        doc["rules"]["permission"] = [
            r for r in doc["rules"]["permission"] if r["id"] != "compare-enrollment-with-peers"
        ]

    amend(api, EARLY_LEARNING, without_peers, EARLY_LEARNING_PARTIES)
    release = {"dimensions": ["school_year", "program_type"]}
    r = api.post("/v1/indicators/prek-served-test/releases", as_="backbone-manager", json=release)
    body = _refused(r, 403, "policy-denied")
    assert "purpose" in {f["left_operand"] for f in body["decision"]["failed_constraints"]}
    # The demo's own peer-learning measure is refused a new release the same way.
    r = api.post(f"/v1/indicators/{HOW_MUCH}/releases", as_="backbone-manager", json=release)
    _refused(r, 403, "policy-denied")


def test_the_purpose_rule_is_checked_again_at_release(api, session, clock):
    """A definition stored before the rule (written to the table directly, as an older
    version would have been) is refused when it is released."""
    from aggregation.definition import IndicatorDefinition
    from aggregation.models import Indicator, IndicatorVersion

    definition = IndicatorDefinition.model_validate(
        _measure(recipients=["early-learning", "district", "backbone"])
    )
    now = clock()
    session.add(
        Indicator(
            id=definition.id,
            title=definition.title,
            latest_version=1,
            created_by="backbone",
            created_at=now,
        )
    )
    session.add(
        IndicatorVersion(
            indicator_id=definition.id,
            version=1,
            definition=definition.model_dump(mode="json", exclude_none=True),
            content_hash=definition.content_hash(),
            created_at=now,
            created_by_client="backbone-manager",
        )
    )
    session.commit()
    r = api.post("/v1/indicators/prek-served-test/releases", as_="backbone-manager", json={})
    assert "bb:PeerLearning" in _refused(r, 422, "invalid-indicator")["detail"]
