"""The peer-learning purpose ``bb:PeerLearning``: lint accepts it (it is in the vocabulary, the
schema's vocabulary summary and the ODRL export), and the engine keeps it, a sibling of program
evaluation rather than a refinement of it. Its use by performance measures, at definition and
at release, is tested in ``tests/indicators/test_performance_measures.py``."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pytest
import yaml

from agreements.compile import compile_terms
from agreements.document import AgreementDocument, vocabulary_summary
from agreements.lint import lint
from agreements.odrl import to_odrl
from demo.seed import code_list_catalog, code_list_versions
from policy import vocabulary as vocab
from policy.engine import decide
from policy.model import Context, Principal, Resource

CATALOG = code_list_catalog()
VERSIONS = code_list_versions()

NOW = datetime(2026, 1, 15, tzinfo=UTC)
BACKBONE = Principal("backbone-manager", "backbone", "backbone", frozenset({"indicators:write"}))
PEER_RULE = "compare-enrollment-with-peers"


def _early_learning() -> dict[str, Any]:
    text = (resources.files("demo") / "agreements" / "early-learning.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _peer_rule(data: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in data["rules"]["permission"] if r["id"] == PEER_RULE)


def _codes(data: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (f.code, f.path)
        for f in lint(AgreementDocument.model_validate(data), k_floor=5, codelists=CATALOG)
    }


def _decide(data: dict[str, Any], purpose: str, recipients: set[str]) -> Any:
    terms = compile_terms(
        AgreementDocument.model_validate(data), version=1, status="active", codelists=VERSIONS
    )
    return decide(
        BACKBONE,
        "publish",
        Resource(
            datasets=("prek_enrollment",),
            dimensions=frozenset({"school_year", "program_type"}),
            method="suppression",
        ),
        Context(purpose=purpose, recipients=frozenset(recipients)),
        [terms],
        NOW,
    )


def test_the_term_is_in_the_vocabulary_and_its_published_summary():
    assert vocab.PEER_LEARNING == "bb:PeerLearning"
    assert vocab.PURPOSES[vocab.PEER_LEARNING] == "dpv:ImproveExistingProductsAndServices"
    assert vocab.PEER_LEARNING in vocabulary_summary()["purposes"]


def test_lint_accepts_a_peer_learning_permission():
    data = _early_learning()
    assert _peer_rule(data)["constraint"][0]["rightOperand"] == "bb:PeerLearning"
    assert _codes(data) == set()


@pytest.mark.parametrize("spelling", ["bb:PeerLearnings", "bb:peerlearning", "PeerLearning"])
def test_lint_refuses_a_misspelled_term(spelling):
    data = _early_learning()
    index = data["rules"]["permission"].index(_peer_rule(data))
    _peer_rule(data)["constraint"][0]["rightOperand"] = spelling
    assert ("unknown-term", f"rules.permission.{index}.constraint.0.rightOperand") in _codes(data)


def test_the_odrl_export_names_the_term_in_the_backbone_vocabulary():
    policy = to_odrl(
        AgreementDocument.model_validate(_early_learning()),
        version=1,
        status="active",
        content_hash="sha256:0",
        codelists=VERSIONS,
    )
    # The compact IRI expands in the shipped context to urn:backbone:vocab:PeerLearning.
    assert policy["@context"]["bb"] == "urn:backbone:vocab:"
    rules = [r for r in policy["permission"] if r["uid"].endswith(f":rule:{PEER_RULE}")]
    assert len(rules) == 1
    purposes = [c for c in rules[0]["constraint"] if c["leftOperand"] == "purpose"]
    assert purposes == [
        {"leftOperand": "purpose", "operator": "eq", "rightOperand": [{"@id": "bb:PeerLearning"}]}
    ]


def test_the_engine_permits_peer_learning_only_to_the_recipients_it_names():
    data = _early_learning()
    assert _decide(data, "bb:PeerLearning", {"early-learning", "district", "backbone"}).permitted
    # The health department is not named: the permission does not reach it.
    refused = _decide(data, "bb:PeerLearning", {"early-learning", "health", "backbone"})
    assert not refused.permitted
    assert any(f.left_operand == "recipient" for f in refused.failed_constraints)


def test_program_evaluation_does_not_permit_peer_learning():
    data = copy.deepcopy(_early_learning())
    data["rules"]["permission"].remove(_peer_rule(data))
    # The remaining permission publishes to the district for program evaluation, not for
    # comparing the program with its peers.
    assert _decide(data, "bb:ProgramEvaluation", {"early-learning", "district"}).permitted
    refused = _decide(data, "bb:PeerLearning", {"early-learning", "district", "backbone"})
    assert not refused.permitted
    assert any(f.left_operand == "purpose" for f in refused.failed_constraints)


def test_a_broader_dpv_purpose_covers_peer_learning():
    data = copy.deepcopy(_early_learning())
    _peer_rule(data)["constraint"][0]["rightOperand"] = "dpv:ImproveExistingProductsAndServices"
    assert _decide(data, "bb:PeerLearning", {"early-learning", "district", "backbone"}).permitted
