"""A one-paragraph explanation of a decision, for a data manager."""

from __future__ import annotations

from typing import Any

from policy.model import Decision, Effect, FailedConstraint, Principal, Resource

_OPS = {
    "eq": "be",
    "neq": "not be",
    "lt": "be less than",
    "lteq": "be at most",
    "gt": "be more than",
    "gteq": "be at least as coarse as",
    "isAnyOf": "be one of",
    "isAllOf": "include all of",
    "isNoneOf": "be none of",
    "isPartOf": "be within",
}


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]" if value else "nothing"
    return str(value)


def _failure(f: FailedConstraint) -> str:
    where = f"rule '{f.rule_id}'"
    if f.agreement_id:
        where += f" of agreement {f.agreement_id} v{f.version}"
    subject = f.left_operand + (f" for dataset {f.dataset}" if f.dataset else "")
    op = _OPS.get(f.operator, f.operator)
    return f"{where} requires {subject} to {op} {_fmt(f.expected)}, but it was {_fmt(f.actual)}"


def explanation(decision: Decision) -> str:
    """One paragraph a data manager can read about ``decision`` (written on demand: most
    callers need only the effect, and the prose costs more than the decision)."""
    return explain(decision, decision.principal, decision.resource)


def decision_document(decision: Decision) -> dict[str, Any]:
    """The decision as JSON for people and clients: its reasons and its explanation."""
    return {**decision.as_dict(), "explanation": explanation(decision)}


def explain(decision: Decision, principal: Principal | None, resource: Resource | None) -> str:
    """The explanation of ``decision`` taken for ``principal`` on ``resource``."""
    who = f"organization {principal.organization_id}" if principal else "the caller"
    what = decision.action
    if resource is not None and resource.datasets:
        what += " on " + ", ".join(resource.datasets)
    elif resource is not None and resource.agreement_id:
        what += f" on agreement {resource.agreement_id}"
    if decision.effect is Effect.PERMIT:
        rules = "; ".join(
            f"rule '{r.rule_id}' of agreement {r.agreement_id} v{r.version}"
            for r in decision.deciding_rules
        )
        text = f"Permitted: {who} may {what} under {rules}."
        obligations = decision.obligations.as_dict()
        if obligations.get("min_cell_size"):
            text += (
                f" Cells must count at least {obligations['min_cell_size']} people"
                " (the strictest contributing agreement)."
            )
        return text
    if decision.basis.value == "forbidden":
        r = decision.deciding_rules[0]
        return (
            f"Denied: {who} may not {what}, because rule '{r.rule_id}' of agreement "
            f"{r.agreement_id} v{r.version} forbids it; a prohibition overrides any permission."
        )
    reasons = "; ".join(_failure(f) for f in decision.failed_constraints[:5])
    more = len(decision.failed_constraints) - 5
    if more > 0:
        reasons += f"; and {more} more"
    return f"Denied: no agreement in force permits {who} to {what}: {reasons}."
