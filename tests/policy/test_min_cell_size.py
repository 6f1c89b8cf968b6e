"""A missing minimum cell size fails closed: no threshold is assumed in its place.

An agreement that states none compiles to terms without one, and any publication it contributes
to carries no threshold in its obligations, however strict the other agreements are; the
release service then refuses a suppressed release (``IndicatorInvalid``), and lint refuses such
an agreement before it is stored (tests/agreements)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from agreements.compile import compile_terms
from agreements.document import AgreementDocument
from policy.engine import PolicySet, decide
from policy.model import Context, Disclosure, Effect, Principal, Resource

LINKAGE = Path(__file__).parent / "cases" / "linkage.yaml"
BACKBONE = Principal("bb", "backbone", "backbone")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
# Publishing a cohort linked across agreements k (k = 10) and el (k = 15): see linkage.yaml.
LINKED = Resource(
    datasets=("kr", "prek"),
    dimensions=frozenset({"year", "hood"}),
    geography="neighborhood",
    linked_datasets=frozenset({"kr", "prek"}),
    cohort_datasets=frozenset({"prek"}),
)


def _policy(without_k: frozenset[str] = frozenset()) -> PolicySet:
    terms = []
    for a in yaml.safe_load(LINKAGE.read_text())["agreements"]:
        data: dict[str, Any] = copy.deepcopy(a["document"])
        if data["uid"] in without_k:
            del data["disclosure"]["min_cell_size"]
        doc = AgreementDocument.model_validate(data)
        terms.append(compile_terms(doc, version=a.get("version", 1), status="active"))
    return PolicySet(terms)


def _publish(policy: PolicySet) -> Any:
    decision = decide(
        BACKBONE, "publish", LINKED, Context(recipients=frozenset({"district"})), policy, NOW
    )
    assert decision.effect is Effect.PERMIT, decision.explanation
    return decision.obligations


def test_the_strictest_stated_minimum_applies() -> None:
    assert _publish(_policy()).min_cell_size == 15


def test_terms_without_a_minimum_assume_none() -> None:
    assert Disclosure().min_cell_size is None
    data = copy.deepcopy(yaml.safe_load(LINKAGE.read_text())["agreements"][0]["document"])
    del data["disclosure"]
    terms = compile_terms(AgreementDocument.model_validate(data), version=1, status="active")
    assert terms.disclosure.min_cell_size is None


def test_one_agreement_without_a_minimum_leaves_the_publication_without_one() -> None:
    # Not 15 (the other agreement's), not 11 (an assumed default): none, so nothing is published.
    assert _publish(_policy(frozenset({"k"}))).min_cell_size is None
    assert _publish(_policy(frozenset({"el"}))).min_cell_size is None
    assert _publish(_policy(frozenset({"k", "el"}))).min_cell_size is None
