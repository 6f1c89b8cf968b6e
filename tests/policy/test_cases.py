"""Policy tests as data: every YAML file under tests/policy/cases holds agreements and the
decisions expected of the engine, with their reasons. The folder as a whole must exercise every
action, operand and operator of the vocabulary."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agreements.compile import compile_terms
from agreements.document import AgreementDocument
from policy import vocabulary as vocab
from policy.engine import PolicySet, decide
from policy.explain import explanation
from policy.model import Context, Principal, Resource

CASES = Path(__file__).parent / "cases"


def _files() -> list[Path]:
    return sorted(CASES.glob("*.yaml"))


def _policy(spec: dict[str, Any]) -> PolicySet:
    terms = []
    for a in spec["agreements"]:
        doc = AgreementDocument.model_validate(a["document"])
        terms.append(
            compile_terms(doc, version=a.get("version", 1), status=a.get("status", "active"))
        )
    return PolicySet(terms)


def _cases() -> list[Any]:
    out = []
    for path in _files():
        spec = yaml.safe_load(path.read_text())
        for case in spec["cases"]:
            out.append(pytest.param(path, case, id=f"{path.stem}: {case['name']}"))
    return out


def _resource(r: dict[str, Any]) -> Resource:
    def fs(key: str) -> frozenset[str] | None:
        return frozenset(r[key]) if key in r else None

    return Resource(
        datasets=tuple(r.get("datasets", ())),
        agreement_id=r.get("agreement"),
        fields=fs("fields"),
        dimensions=fs("dimensions"),
        geography=r.get("geography"),
        method=r.get("method"),
        linked_datasets=frozenset(r.get("linked_datasets", ())),
        cohort_datasets=frozenset(r.get("cohort_datasets", ())),
    )


@pytest.mark.parametrize(("path", "case"), _cases())
def test_case(path: Path, case: dict[str, Any]) -> None:
    spec = yaml.safe_load(path.read_text())
    p = case["principal"]
    principal = Principal(p["client"], p["org"], p["kind"], frozenset(p.get("scopes", ())))
    ctx = case.get("context", {})
    context = Context(
        purpose=ctx.get("purpose"),
        recipients=frozenset(ctx["recipients"]) if "recipients" in ctx else None,
    )
    now = datetime.fromisoformat(str(case.get("now", "2026-06-01T00:00:00+00:00")))
    decision = decide(
        principal, case["action"], _resource(case.get("resource", {})), context, _policy(spec), now
    )
    expect = case["expect"]
    assert decision.effect.value == expect["effect"], explanation(decision)
    if "basis" in expect:
        assert decision.basis.value == expect["basis"], explanation(decision)
    if "rules" in expect:
        got = [f"{r.agreement_id}/{r.version}/{r.rule_id}" for r in decision.deciding_rules]
        assert got == expect["rules"], explanation(decision)
    for wanted in expect.get("failed", []):
        matches = [
            f
            for f in decision.failed_constraints
            if all(
                getattr(f, {"rule": "rule_id", "agreement": "agreement_id"}.get(k, k)) == v
                for k, v in wanted.items()
            )
        ]
        assert matches, f"no failed constraint like {wanted} in {decision.failed_constraints}"
    for key, value in expect.get("obligations", {}).items():
        got = decision.obligations.as_dict().get(key)
        assert got == value, f"obligation {key}: {got} != {value}"
    assert explanation(decision)
    for needle in expect.get("explanation_mentions", []):
        assert needle in explanation(decision)


def test_cases_cover_the_whole_vocabulary() -> None:
    actions: set[str] = set()
    operands: set[str] = set()
    operators: set[str] = set()
    decided: set[str] = set()
    effects: set[str] = set()
    for path in _files():
        spec = yaml.safe_load(path.read_text())
        for a in spec["agreements"]:
            for kind in ("permission", "prohibition", "obligation"):
                for rule in a["document"]["rules"].get(kind, []):
                    actions.add(rule["action"])
                    for c in rule.get("constraint", []):
                        operands.add(c["leftOperand"])
                        operators.add(c["operator"])
        for case in spec["cases"]:
            decided.add(case["action"])
            effects.add(case["expect"].get("basis", case["expect"]["effect"]))
    assert actions >= set(vocab.ACTIONS), set(vocab.ACTIONS) - actions
    assert operands >= set(vocab.LEFT_OPERANDS), set(vocab.LEFT_OPERANDS) - operands
    assert operators >= set(vocab.OPERATORS), set(vocab.OPERATORS) - operators
    assert {
        "submit",
        "compute",
        "publish",
        "link",
        "read",
        "export_records",
        "redisclose",
        "read_agreement",
        "read_audit",
    } <= decided
    assert {"permitted", "forbidden", "not_permitted"} <= effects
