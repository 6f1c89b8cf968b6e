"""Lint findings: vocabulary, mandatory clauses, k floor, dead rules, contradictions."""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import pytest
import yaml

from agreements.document import AgreementDocument
from agreements.errors import InvalidAgreement
from agreements.lint import lint
from agreements.service import check
from core.errors import InvalidInput
from demo.seed import code_list_catalog, code_list_versions

CATALOG = code_list_catalog()
VERSIONS = code_list_versions()


def _demo(name: str = "district.yaml") -> dict[str, Any]:
    return yaml.safe_load((resources.files("demo") / "agreements" / name).read_text())


def _codes(data: dict[str, Any], k_floor: int = 5) -> set[tuple[str, str]]:
    return {
        (f.code, f.path)
        for f in lint(AgreementDocument.model_validate(data), k_floor=k_floor, codelists=CATALOG)
    }


@pytest.mark.parametrize("name", ["district.yaml", "health.yaml", "early-learning.yaml"])
def test_the_demo_agreements_lint_clean(name):
    assert _codes(_demo(name)) == set()


def test_ferpa_studies_needs_its_five_clauses():
    data = _demo()
    data["clauses"] = {"purpose": "x"}
    codes = _codes(data)
    for clause in ("scope", "duration", "data_disclosed", "destruction"):
        assert ("missing-clause", f"clauses.{clause}") in codes


def test_unknown_vocabulary_terms():
    data = _demo()
    data["legal_basis"] = "handshake"
    rule = data["rules"]["permission"][1]
    rule["constraint"][0]["rightOperand"] = ["dpv:Marketing"]
    rule["constraint"][3]["rightOperand"] = "galaxy"
    data["rules"]["permission"].append(
        {"id": "x", "action": "sell", "target": "attendance", "assignee": "backbone"}
    )
    data["rules"]["permission"].append(
        {
            "id": "y",
            "action": "publish",
            "target": "attendance",
            "assignee": "backbone",
            "constraint": [
                {"leftOperand": "colour", "operator": "eq", "rightOperand": "red"},
                {"leftOperand": "purpose", "operator": "resembles", "rightOperand": "x"},
            ],
        }
    )
    codes = {c for c, _ in _codes(data)}
    found = [p for c, p in _codes(data) if c == "unknown-term"]
    assert "unknown-term" in codes
    assert "legal_basis" in found
    assert "rules.permission.1.constraint.0.rightOperand" in found
    assert "rules.permission.1.constraint.3.rightOperand" in found
    assert "rules.permission.2.action" in found
    assert "rules.permission.3.constraint.0.leftOperand" in found
    assert "rules.permission.3.constraint.1.operator" in found


def test_k_below_the_floor():
    data = _demo()
    data["disclosure"]["min_cell_size"] = 3
    assert ("k-below-floor", "disclosure.min_cell_size") in _codes(data, k_floor=5)
    assert ("k-below-floor", "disclosure.min_cell_size") not in _codes(data, k_floor=3)


def test_a_missing_minimum_cell_size_is_refused():
    data = _demo()
    del data["disclosure"]["min_cell_size"]
    document = AgreementDocument.model_validate(data)
    assert document.disclosure.min_cell_size is None  # no default is assumed
    assert _codes(data) == {("missing-min-cell-size", "disclosure.min_cell_size")}
    with pytest.raises(InvalidAgreement) as refused:
        check(document, k_floor=5)
    assert isinstance(refused.value, InvalidInput)  # a 422 problem (api/errors.py)
    assert [f["code"] for f in refused.value.extra["findings"]] == ["missing-min-cell-size"]


def test_dead_rules():
    data = _demo()
    data["rules"]["permission"].append(
        {"id": "ghost", "action": "publish", "target": "no_such_dataset", "assignee": "backbone"}
    )
    data["rules"]["permission"].append(
        {"id": "stranger", "action": "submit", "target": "attendance", "assignee": "city"}
    )
    data["rules"]["permission"][1]["constraint"][2]["rightOperand"].append("shoe_size")
    codes = _codes(data)
    assert ("dead-rule", "rules.permission.2.target") in codes
    assert ("dead-rule", "rules.permission.3.assignee") in codes
    assert ("dead-rule", "rules.permission.1.constraint.2.rightOperand") in codes


def test_contradictions_and_duplicates():
    data = _demo()
    data["rules"]["prohibition"].append({"id": "no-publishing", "action": "publish", "target": "*"})
    data["rules"]["permission"].append(copy.deepcopy(data["rules"]["permission"][0]))
    codes = _codes(data)
    assert ("contradiction", "rules.permission.1") in codes
    assert ("duplicate-rule", "rules.permission.2") in codes
    assert ("duplicate-rule-id", "rules") in codes


def test_backbone_never_permits_record_export():
    data = _demo()
    data["rules"]["permission"].append(
        {"id": "dump", "action": "export_records", "target": "*", "assignee": "backbone"}
    )
    assert ("never-permitted", "rules.permission.2.action") in _codes(data)


def test_privacy_and_linkage_consistency():
    data = _demo()
    data["disclosure"]["privacy"]["epsilon_per_release"] = 5.0
    data["disclosure"]["privacy"]["epsilon_per_period"] = 1.0
    data["linkage"] = {"allowed": False, "datasets": ["prek_enrollment"]}
    codes = _codes(data)
    assert ("contradiction", "disclosure.privacy") in codes
    assert ("contradiction", "linkage.datasets") in codes
    data["disclosure"].pop("privacy")
    assert ("missing-privacy-budget", "disclosure.privacy") in _codes(data)


def test_a_share_cap_below_the_loss_of_one_release_is_refused():
    data = _demo()  # epsilon 1.0 per release, 4.0 per period
    privacy = data["disclosure"]["privacy"]
    cap = "disclosure.privacy.max_share_per_release"
    for share in (0.25, 0.5, 1.0):
        privacy["max_share_per_release"] = share
        assert _codes(data) == set()
    privacy["max_share_per_release"] = 0.2
    [finding] = [
        f
        for f in lint(AgreementDocument.model_validate(data), k_floor=5, codelists=CATALOG)
        if f.path == cap
    ]
    assert finding.code == "contradiction"
    assert "at most 0.8" in finding.message and "every release would be refused" in finding.message
    for share in (0, 1.5, -0.1):
        privacy["max_share_per_release"] = share
        with pytest.raises(ValueError):
            AgreementDocument.model_validate(data)


def test_dimensions_must_declare_their_values():
    data = _demo()
    field = data["datasets"][0]["fields"][2]
    assert field["name"] == "neighborhood"
    del field["constraints"]["codelist"]
    assert ("undeclared-categories", "datasets.0.fields.2.constraints.enum") in _codes(data)
    data = _demo()
    assert data["datasets"][1]["fields"][3]["name"] == "grade"
    del data["datasets"][1]["fields"][3]["constraints"]["enum"]
    assert ("undeclared-categories", "datasets.1.fields.3.constraints.enum") in _codes(data)


def test_the_review_term_is_checked():
    data = _demo("health.yaml")
    assert data["publication_review"] == {
        "required": True,
        "window_days": 10,
        "on_timeout": "publish",
    }
    data["publication_review"] = {"required": True}
    assert _codes(data) == {
        ("missing-review-window", "publication_review.window_days"),
        ("missing-review-timeout", "publication_review.on_timeout"),
    }
    data["publication_review"] = {"required": True, "window_days": 90, "on_timeout": "hold"}
    assert _codes(data) == {("review-window-out-of-range", "publication_review.window_days")}
    data["publication_review"] = {"required": False, "window_days": 10}
    assert _codes(data) == {("dead-clause", "publication_review")}
    data["publication_review"] = {"required": True, "window_days": 10, "on_timeout": "never"}
    with pytest.raises(Exception, match="on_timeout"):
        AgreementDocument.model_validate(data)


def test_the_superseded_boolean_is_refused_and_points_to_the_new_term():
    data = _demo("district.yaml")
    data["publication_review_by_provider"] = True
    findings = lint(AgreementDocument.model_validate(data), codelists=CATALOG)
    assert [(f.code, f.path) for f in findings] == [
        ("superseded-term", "publication_review_by_provider")
    ]
    assert "publication_review: {required: true" in findings[0].message


def test_a_stored_version_with_the_boolean_is_held_to_it_with_the_documented_defaults():
    from agreements.compile import compile_terms
    from policy.model import PublicationReview

    data = _demo("district.yaml")
    data["publication_review_by_provider"] = True
    terms = compile_terms(
        AgreementDocument.model_validate(data), version=1, status="active", codelists=VERSIONS
    )
    assert terms.publication_review == PublicationReview(10, "hold")
    del data["publication_review_by_provider"]
    plain = AgreementDocument.model_validate(data)
    assert (
        compile_terms(plain, version=1, status="active", codelists=VERSIONS).publication_review
        is None
    )
    # Agreements stored before the term existed keep their content hash.
    assert b'"publication_review":' not in plain.canonical_json()
    assert b'"publication_review_by_provider":false' in plain.canonical_json()
