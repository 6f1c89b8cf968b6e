"""A ``notify`` obligation means something: lint accepts only what the service carries out (named
events, named parties), and the compiled agreement makes the service tell those parties."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml

from agreements.compile import compile_terms
from agreements.document import AgreementDocument
from agreements.lint import lint
from demo.seed import code_list_catalog, code_list_versions
from notifications.events import EventType, audience

CATALOG = code_list_catalog()
VERSIONS = code_list_versions()


def _demo() -> dict[str, Any]:
    return yaml.safe_load((resources.files("demo") / "agreements" / "district.yaml").read_text())


def _with(rule: dict[str, Any], kind: str = "obligation") -> dict[str, Any]:
    data = _demo()
    data["rules"][kind].append(rule)
    return data


def _codes(data: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (f.code, f.path) for f in lint(AgreementDocument.model_validate(data), codelists=CATALOG)
    }


EVENT = {"leftOperand": "event", "operator": "isAnyOf", "rightOperand": ["release.published"]}
TO_DISTRICT = {"leftOperand": "recipient", "operator": "isAnyOf", "rightOperand": ["district"]}
DUTY = {"id": "tell-district", "action": "notify", "assignee": "backbone"}


def test_a_notify_obligation_naming_events_and_parties_lints_clean_and_is_enforced() -> None:
    data = _with({**DUTY, "target": "kindergarten_readiness", "constraint": [EVENT, TO_DISTRICT]})
    assert _codes(data) == set()
    terms = compile_terms(
        AgreementDocument.model_validate(data), version=1, status="active", codelists=VERSIONS
    )
    told = audience(EventType.RELEASE_PUBLISHED, [terms], ["kindergarten_readiness"])
    assert told.obligated == {"district": f"{terms.id}/v1/tell-district"}
    assert audience(EventType.SUBMISSION_ACCEPTED, [terms]).obligated == {}


@pytest.mark.parametrize(
    ("constraints", "finding"),
    [
        ([], ("unsupported-term", "rules.obligation.1.constraint")),
        ([EVENT], ("unsupported-term", "rules.obligation.1.constraint")),
        ([TO_DISTRICT], ("unsupported-term", "rules.obligation.1.constraint")),
        (
            [{**EVENT, "rightOperand": ["release.publishd"]}, TO_DISTRICT],
            ("unknown-term", "rules.obligation.1.constraint.0.rightOperand"),
        ),
        (
            [EVENT, {**TO_DISTRICT, "rightOperand": ["the-press"]}],
            ("dead-rule", "rules.obligation.1.constraint.1.rightOperand"),
        ),
        (
            [{**EVENT, "operator": "isNoneOf"}, TO_DISTRICT],
            ("unsupported-term", "rules.obligation.1.constraint.0.operator"),
        ),
        (
            [
                EVENT,
                TO_DISTRICT,
                {"leftOperand": "purpose", "operator": "eq", "rightOperand": "dpv:PublicBenefit"},
            ],
            ("unsupported-term", "rules.obligation.1.constraint.2.leftOperand"),
        ),
        ([EVENT, EVENT, TO_DISTRICT], ("unsupported-term", "rules.obligation.1.constraint")),
    ],
)
def test_lint_refuses_a_notify_obligation_it_cannot_enforce(
    constraints: list[dict[str, Any]], finding: tuple[str, str]
) -> None:
    assert finding in _codes(_with({**DUTY, "target": "*", "constraint": constraints}))


def test_notify_is_a_duty_and_event_constrains_only_notify() -> None:
    data = _with({**DUTY, "target": "*", "constraint": [EVENT, TO_DISTRICT]}, kind="permission")
    assert any(code == "unsupported-term" for code, _ in _codes(data))
    data = _demo()
    data["rules"]["permission"][0].setdefault("constraint", []).append(EVENT)
    assert any(
        code == "unsupported-term" and path.startswith("rules.permission.0.constraint")
        for code, path in _codes(data)
    )
