"""The public as a recipient: an agreement admits it only by naming it.

Publishing to ``public`` is permitted only when every contributing agreement's publish
permission names ``public`` in its recipient constraint (never implied by a permission without
one, nor by one that only excludes others); the public reads a release under the same terms.
Lint accepts the term and the ODRL export names the public as ``bb:Public``."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agreements.compile import compile_terms
from agreements.document import AgreementDocument
from agreements.lint import lint
from agreements.odrl import PUBLIC_PARTY, to_odrl
from agreements.parse import parse_document
from demo.seed import code_list_catalog, code_list_versions
from policy.engine import PolicySet, decide
from policy.model import PUBLIC, PUBLIC_PRINCIPAL, Context, Decision, Effect, Principal, Resource

CATALOG = code_list_catalog()
VERSIONS = code_list_versions()

ROOT = Path(__file__).resolve().parents[2]
LINKAGE = Path(__file__).parent / "cases" / "linkage.yaml"
BACKBONE = Principal("bb", "backbone", "backbone")
DISTRICT = Principal("district-dashboard", "district", "partner")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
ORGS = ["district", "early-learning", "backbone"]
# Readiness by year and neighborhood (agreement k), and the same of children in pre-K: the
# cohort is counted under agreement el as well (see linkage.yaml).
SINGLE = Resource(
    datasets=("kr",), dimensions=frozenset({"year", "hood"}), geography="neighborhood"
)
CROSS = Resource(
    datasets=("kr", "prek"),
    dimensions=frozenset({"year", "hood"}),
    geography="neighborhood",
    linked_datasets=frozenset({"kr", "prek"}),
    cohort_datasets=frozenset({"prek"}),
)


def _document(uid: str) -> dict[str, Any]:
    for a in yaml.safe_load(LINKAGE.read_text())["agreements"]:
        if a["document"]["uid"] == uid:
            return copy.deepcopy(a["document"])
    raise AssertionError(uid)


def _recipients(data: dict[str, Any], operator: str, values: list[str] | None) -> dict[str, Any]:
    """``data`` with its publish permission's recipient constraint replaced (None: removed)."""
    (rule,) = [r for r in data["rules"]["permission"] if r["id"] == "publish"]
    kept = [c for c in rule["constraint"] if c["leftOperand"] != "recipient"]
    if values is not None:
        kept.append({"leftOperand": "recipient", "operator": operator, "rightOperand": values})
    rule["constraint"] = kept
    return data


def _policy(*documents: dict[str, Any]) -> PolicySet:
    return PolicySet(
        compile_terms(
            AgreementDocument.model_validate(d), version=1, status="active", codelists=VERSIONS
        )
        for d in documents
    )


def _publish(policy: PolicySet, resource: Resource, recipients: list[str]) -> Decision:
    return decide(
        BACKBONE, "publish", resource, Context(recipients=frozenset(recipients)), policy, NOW
    )


def _read(policy: PolicySet, principal: Principal, datasets: tuple[str, ...]) -> Decision:
    return decide(principal, "read", Resource(datasets=datasets), Context(), policy, NOW)


def test_public_principal_and_reserved_id() -> None:
    assert PUBLIC == "public"
    assert PUBLIC_PRINCIPAL.organization_id == PUBLIC_PRINCIPAL.client_id == PUBLIC
    assert PUBLIC_PRINCIPAL.organization_kind == PUBLIC
    assert PUBLIC_PRINCIPAL.scopes == frozenset({"indicators:read"})


def test_a_single_agreement_without_public_denies_naming_its_recipient_constraint() -> None:
    policy = _policy(_document("k"))
    assert _publish(policy, SINGLE, ["district"]).permitted
    denied = _publish(policy, SINGLE, ["district", PUBLIC])
    assert denied.effect is Effect.DENY
    (failure,) = denied.failed_constraints
    assert (failure.agreement_id, failure.rule_id, failure.left_operand) == (
        "k",
        "publish",
        "recipient",
    )
    assert failure.expected == sorted(ORGS) and PUBLIC in failure.actual


@pytest.mark.parametrize("operator", ["isPartOf", "isAnyOf"])
def test_an_agreement_that_names_public_permits_it(operator: str) -> None:
    policy = _policy(_recipients(_document("k"), operator, [*ORGS, PUBLIC]))
    assert _publish(policy, SINGLE, ["district", PUBLIC]).permitted
    assert _publish(policy, SINGLE, [PUBLIC]).permitted


@pytest.mark.parametrize(
    ("operator", "values"),
    [(None, None), ("isNoneOf", ["health"]), ("isAnyOf", ORGS)],
    ids=["none", "isNoneOf", "isAnyOf-others"],
)
def test_the_public_is_never_implied(operator: str | None, values: list[str] | None) -> None:
    # A permission without a recipient constraint (or one that only excludes, or one satisfied
    # by another recipient) admits organizations, but not everyone: publishing to the public
    # must be agreed in so many words.
    policy = _policy(_recipients(_document("k"), operator or "isAnyOf", values))
    assert _publish(policy, SINGLE, ["district", "early-learning"]).permitted
    denied = _publish(policy, SINGLE, ["district", PUBLIC])
    assert not denied.permitted
    failure = denied.failed_constraints[0]
    assert (failure.left_operand, failure.operator, failure.expected) == (
        "recipient",
        "isAnyOf",
        [PUBLIC],
    )
    assert not _read(policy, PUBLIC_PRINCIPAL, ("kr",)).permitted


def test_cross_partner_needs_public_in_every_agreement() -> None:
    k_public = _recipients(_document("k"), "isPartOf", [*ORGS, PUBLIC])
    el_public = _recipients(_document("el"), "isPartOf", [*ORGS, PUBLIC])
    only_one = _policy(k_public, _document("el"))
    denied = _publish(only_one, CROSS, ["district", PUBLIC])
    assert not denied.permitted
    assert {(f.agreement_id, f.left_operand) for f in denied.failed_constraints} == {
        ("el", "recipient")
    }
    assert not _publish(_policy(_document("k"), el_public), CROSS, [PUBLIC]).permitted
    both = _publish(_policy(k_public, el_public), CROSS, ["district", PUBLIC])
    assert both.permitted and {a for a, _ in both.agreements} == {"k", "el"}


def test_the_public_reads_what_every_agreement_publishes_to_it() -> None:
    k_public = _recipients(_document("k"), "isPartOf", [*ORGS, PUBLIC])
    assert _read(_policy(k_public), PUBLIC_PRINCIPAL, ("kr",)).permitted
    denied = _read(_policy(_document("k")), PUBLIC_PRINCIPAL, ("kr",))
    assert not denied.permitted and denied.failed_constraints[0].left_operand == "recipient"
    # Both datasets of a cross-partner release must be published to the public.
    mixed = _policy(k_public, _document("el"))
    assert not _read(mixed, PUBLIC_PRINCIPAL, ("kr", "prek")).permitted
    assert _read(mixed, DISTRICT, ("kr", "prek")).permitted


def test_an_explicit_read_permission_for_everyone_does_not_admit_the_public() -> None:
    data = _document("k")
    data["rules"]["permission"].append({"id": "read-all", "action": "read", "target": "kr"})
    policy = _policy(data)
    assert _read(policy, DISTRICT, ("kr",)).permitted
    assert not _read(policy, PUBLIC_PRINCIPAL, ("kr",)).permitted
    data["rules"]["permission"][-1]["constraint"] = [
        {"leftOperand": "recipient", "operator": "isAnyOf", "rightOperand": [PUBLIC]}
    ]
    assert _read(_policy(data), PUBLIC_PRINCIPAL, ("kr",)).permitted


def test_a_prohibition_can_forbid_publishing_to_the_public() -> None:
    data = _recipients(_document("k"), "isPartOf", [*ORGS, PUBLIC])
    data["rules"]["prohibition"] = [
        {
            "id": "not-public",
            "action": "publish",
            "target": "kr",
            "constraint": [
                {"leftOperand": "recipient", "operator": "isAnyOf", "rightOperand": [PUBLIC]}
            ],
        }
    ]
    policy = _policy(data)
    assert _publish(policy, SINGLE, ["district"]).permitted
    forbidden = _publish(policy, SINGLE, ["district", PUBLIC])
    assert not forbidden.permitted and forbidden.deciding_rules[0].rule_id == "not-public"


def test_lint_accepts_public_and_the_odrl_export_names_the_public_party() -> None:
    doc = parse_document((ROOT / "demo" / "agreements" / "district.yaml").read_text())
    assert [f for f in lint(doc, codelists=CATALOG) if "public" in f.message.lower()] == []
    assert lint(doc, codelists=CATALOG) == []
    exported = to_odrl(doc, version=1, status="active", content_hash="sha256:x", codelists=VERSIONS)
    (publish,) = [
        p for p in exported["permission"] if p["uid"].endswith("publish-community-indicators")
    ]
    (recipient,) = [c for c in publish["constraint"] if c["leftOperand"] == "recipient"]
    ids = [v["@id"] for v in recipient["rightOperand"]]
    assert PUBLIC_PARTY in ids and "urn:backbone:org:district" in ids
    assert "urn:backbone:org:public" not in ids
    # bb: is a prefix of the shipped context, so the party expands to the profile's vocabulary.
    assert exported["@context"]["bb"] == "urn:backbone:vocab:"
