"""``decide``: default deny, forbid beats permit, strictest obligation wins.

For each dataset a request touches, the agreements in force that cover that dataset are found
(through a :class:`PolicySet` index, so a decision costs microseconds with many agreements). A
matching prohibition denies at once. Otherwise some permission must match, together with the
constraints the agreement's dataset definitions imply (only listed fields may be submitted, only
declared dimensions published, linkage only where allowed). A request that touches several
datasets is permitted only if every one of them is, and then carries the strictest obligations
of all contributing agreements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from policy.constraints import render_expected, satisfied, show
from policy.explain import explain
from policy.model import (
    AgreementTerms,
    Basis,
    Context,
    Decision,
    Effect,
    FailedConstraint,
    Obligations,
    Principal,
    Resource,
    Rule,
    RuleRef,
)
from policy.vocabulary import GEOGRAPHY_LEVELS

_READER_OPERANDS = frozenset({"recipient", "dateTime"})
_ROUNDING_STRICTNESS = {"none": 0, "base5": 1, "midpoint6": 2}
_DATA_ACTIONS = frozenset(
    {"submit", "compute", "publish", "link", "read", "export_records", "redisclose"}
)


class PolicySet:
    """Compiled agreement terms indexed by dataset and by agreement id."""

    __slots__ = ("_by_dataset", "_by_id", "agreements")

    def __init__(self, agreements: Iterable[AgreementTerms]) -> None:
        self.agreements: tuple[AgreementTerms, ...] = tuple(agreements)
        by_dataset: dict[str, list[AgreementTerms]] = {}
        by_id: dict[str, list[AgreementTerms]] = {}
        for terms in self.agreements:
            by_id.setdefault(terms.id, []).append(terms)
            for ds in terms.datasets:
                by_dataset.setdefault(ds.name, []).append(terms)
        self._by_dataset = {k: tuple(v) for k, v in by_dataset.items()}
        self._by_id = {k: tuple(v) for k, v in by_id.items()}

    def covering(self, dataset: str) -> tuple[AgreementTerms, ...]:
        return self._by_dataset.get(dataset, ())

    def versions(self, agreement_id: str) -> tuple[AgreementTerms, ...]:
        return self._by_id.get(agreement_id, ())


def _actual(
    left: str,
    dataset: str,
    principal: Principal,
    resource: Resource,
    context: Context,
    now: datetime,
) -> Any:
    if left == "purpose":
        return context.purpose
    if left == "recipient":
        return context.recipients
    if left == "dimension":
        return frozenset() if dataset in resource.cohort_datasets else resource.dimensions
    if left == "field":
        return resource.fields
    if left == "spatialGranularity":
        if resource.geography is None and resource.dimensions is not None:
            # A table with no geographic dimension covers the whole area: the coarsest level.
            return GEOGRAPHY_LEVELS[-1]
        return resource.geography
    if left == "disclosureMethod":
        return resource.method
    if left == "dateTime":
        return now
    if left == "linkedDataset":
        return resource.linked_datasets
    return None


def _rule_failures(
    rule: Rule,
    terms: AgreementTerms,
    dataset: str,
    principal: Principal,
    resource: Resource,
    context: Context,
    now: datetime,
    only: frozenset[str] | None = None,
) -> list[FailedConstraint]:
    failures: list[FailedConstraint] = []
    for c in rule.constraints:
        if only is not None and c.left not in only:
            continue
        actual = _actual(c.left, dataset, principal, resource, context, now)
        if not satisfied(c, actual):
            failures.append(
                FailedConstraint(
                    terms.id,
                    terms.version,
                    rule.id,
                    c.left,
                    c.operator,
                    render_expected(c),
                    show(actual),
                    dataset,
                )
            )
    return failures


def _implied_failures(
    action: str, terms: AgreementTerms, dataset: str, principal: Principal, resource: Resource
) -> list[FailedConstraint]:
    """Constraints that follow from the agreement's dataset definition itself."""
    ds = terms.dataset(dataset)
    if ds is None:  # pragma: no cover - PolicySet only yields covering agreements
        return []
    out: list[FailedConstraint] = []

    def fail(rule: str, left: str, op: str, expected: Any, actual: Any) -> None:
        out.append(
            FailedConstraint(terms.id, terms.version, rule, left, op, expected, actual, dataset)
        )

    if action == "submit":
        allowed = ds.submitters | {ds.provider}
        if principal.organization_id not in allowed and principal.client_id not in allowed:
            fail(
                "dataset:submitters",
                "submitter",
                "isAnyOf",
                sorted(allowed),
                principal.organization_id,
            )
        if resource.fields is not None:
            extra = resource.fields - ds.field_names
            if extra:
                # Data minimization. Unlisted column names are not echoed: a file without a
                # header row would turn its first record's values into "column names".
                fail(
                    "dataset:fields",
                    "field",
                    "isPartOf",
                    sorted(ds.field_names),
                    f"{len(extra)} unlisted field(s)",
                )
    if (
        action in ("publish", "compute")
        and resource.dimensions is not None
        and dataset not in resource.cohort_datasets
    ):
        extra = resource.dimensions - ds.dimension_names
        if extra:
            fail(
                "dataset:dimensions",
                "dimension",
                "isPartOf",
                sorted(ds.dimension_names),
                sorted(extra),
            )
    if (
        action == "publish"
        and resource.method is not None
        and resource.method not in terms.disclosure.methods
    ):
        fail(
            "disclosure:method",
            "disclosureMethod",
            "isAnyOf",
            list(terms.disclosure.methods),
            resource.method,
        )
    if resource.linked_datasets:
        others = resource.linked_datasets - {dataset}
        if not terms.linkage_allowed:
            fail("linkage", "linkage", "eq", True, False)
        elif others - terms.linkable_datasets:
            fail(
                "linkage:datasets",
                "linkedDataset",
                "isPartOf",
                sorted(terms.linkable_datasets),
                sorted(others),
            )
    return out


def _unique(failures: Sequence[FailedConstraint]) -> list[FailedConstraint]:
    seen: set[str] = set()
    out = []
    for f in failures:
        key = repr(f)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _strictest(parts: Sequence[tuple[AgreementTerms, str]]) -> Obligations:
    k: int | None = None
    rounding: str | None = None
    methods: set[str] | None = None
    top: float | None = None
    bottom: float | None = None
    eps_release: float | None = None
    eps_period: float | None = None
    contributions: int | None = None
    fields: frozenset[str] | None = None
    linkage: bool | None = None
    grace: int | None = None
    for terms, dataset in parts:
        d = terms.disclosure
        k = d.min_cell_size if k is None else max(k, d.min_cell_size)
        if rounding is None or _ROUNDING_STRICTNESS[d.rounding] > _ROUNDING_STRICTNESS[rounding]:
            rounding = d.rounding
        methods = set(d.methods) if methods is None else methods & set(d.methods)
        if d.top_code_percent is not None:
            top = d.top_code_percent if top is None else min(top, d.top_code_percent)
        if d.bottom_code_percent is not None:
            bottom = d.bottom_code_percent if bottom is None else max(bottom, d.bottom_code_percent)
        if d.epsilon_per_release is not None:
            eps_release = (
                d.epsilon_per_release
                if eps_release is None
                else min(eps_release, d.epsilon_per_release)
            )
        if d.epsilon_per_period is not None:
            eps_period = (
                d.epsilon_per_period
                if eps_period is None
                else min(eps_period, d.epsilon_per_period)
            )
        contributions = (
            d.max_contributions
            if contributions is None
            else min(contributions, d.max_contributions)
        )
        ds = terms.dataset(dataset)
        if ds is not None:
            fields = ds.field_names if fields is None else fields | ds.field_names
        linkage = terms.linkage_allowed if linkage is None else linkage and terms.linkage_allowed
        grace = terms.grace_period_days if grace is None else min(grace, terms.grace_period_days)
    return Obligations(
        min_cell_size=k,
        rounding=rounding,
        methods=tuple(sorted(methods)) if methods is not None else None,
        top_code_percent=top,
        bottom_code_percent=bottom,
        epsilon_per_release=eps_release,
        epsilon_per_period=eps_period,
        max_contributions=contributions,
        fields_allowed=fields,
        linkage_allowed=linkage,
        delete_after_days=grace,
    )


def _decision(
    effect: Effect,
    basis: Basis,
    action: str,
    rules: Sequence[RuleRef] = (),
    failures: Sequence[FailedConstraint] = (),
    obligations: Obligations | None = None,
    agreements: Sequence[tuple[str, int]] = (),
    principal: Principal | None = None,
    resource: Resource | None = None,
) -> Decision:
    d = Decision(
        effect=effect,
        basis=basis,
        action=action,
        deciding_rules=tuple(rules),
        failed_constraints=tuple(failures),
        obligations=obligations or Obligations(),
        agreements=tuple(dict.fromkeys(agreements)),
    )
    return Decision(
        d.effect,
        d.basis,
        d.action,
        d.deciding_rules,
        d.failed_constraints,
        d.obligations,
        d.agreements,
        explain(d, principal, resource),
    )


def _decide_agreement_read(principal: Principal, resource: Resource, ps: PolicySet) -> Decision:
    versions = ps.versions(resource.agreement_id or "")
    is_party = any(principal.organization_id in t.party_ids for t in versions)
    steward = principal.organization_kind in ("backbone", "auditor")
    if is_party or steward:
        rule = "system:agreement-party" if is_party else "system:agreement-steward"
        ref = RuleRef(resource.agreement_id or "", versions[-1].version if versions else 0, rule)
        return _decision(
            Effect.PERMIT,
            Basis.PERMITTED,
            "read_agreement",
            [ref],
            principal=principal,
            resource=resource,
        )
    failure = FailedConstraint(
        resource.agreement_id,
        None,
        "system:agreement-party",
        "party",
        "isAnyOf",
        "a party to the agreement, the backbone or an auditor",
        principal.organization_id,
    )
    return _decision(
        Effect.DENY,
        Basis.NOT_PERMITTED,
        "read_agreement",
        failures=[failure],
        principal=principal,
        resource=resource,
    )


def _decide_audit_read(principal: Principal) -> Decision:
    if principal.organization_kind == "auditor":
        return _decision(
            Effect.PERMIT,
            Basis.PERMITTED,
            "read_audit",
            [RuleRef("system", 0, "system:auditors-read-log")],
            principal=principal,
        )
    failure = FailedConstraint(
        None,
        None,
        "system:auditors-read-log",
        "organizationKind",
        "eq",
        "auditor",
        principal.organization_kind,
    )
    return _decision(
        Effect.DENY, Basis.NOT_PERMITTED, "read_audit", failures=[failure], principal=principal
    )


def decide(
    principal: Principal,
    action: str,
    resource: Resource,
    context: Context,
    agreements: PolicySet | Iterable[AgreementTerms],
    now: datetime,
) -> Decision:
    """Decide whether ``principal`` may perform ``action`` on ``resource`` in ``context`` at ``now``.

    ``agreements`` are the compiled terms of every known agreement version (status included);
    pass a :class:`PolicySet` to reuse its index across decisions. The result is a frozen
    :class:`~policy.model.Decision` whose reasons name rule ids, agreement ids and versions, and
    every failed constraint with its expected and actual value.
    """
    ps = agreements if isinstance(agreements, PolicySet) else PolicySet(agreements)
    if action == "read_agreement":
        return _decide_agreement_read(principal, resource, ps)
    if action == "read_audit":
        return _decide_audit_read(principal)
    if action not in _DATA_ACTIONS:
        failure = FailedConstraint(
            None, None, "system:vocabulary", "action", "isAnyOf", sorted(_DATA_ACTIONS), action
        )
        return _decision(
            Effect.DENY,
            Basis.NOT_PERMITTED,
            action,
            failures=[failure],
            principal=principal,
            resource=resource,
        )
    if not resource.datasets:
        failure = FailedConstraint(
            None, None, "system:datasets", "dataset", "isAnyOf", "at least one dataset", []
        )
        return _decision(
            Effect.DENY,
            Basis.NOT_PERMITTED,
            action,
            failures=[failure],
            principal=principal,
            resource=resource,
        )

    # A release is read by its recipients: a publishing permission lets every recipient its
    # recipient constraint names read (only that constraint and dateTime concern the reader);
    # an explicit "read" permission lets its assignees read. Only "read" prohibitions apply.
    reading = action == "read"
    if reading:
        context = Context(
            purpose=context.purpose, recipients=frozenset({principal.organization_id})
        )

    def permission_action(rule: Rule) -> bool:
        return rule.action in ("publish", "read") if reading else rule.action == action

    def assignee_ok(rule: Rule) -> bool:
        if reading and rule.action == "publish":
            return True
        return "*" in rule.assignees or principal.organization_id in rule.assignees

    def only(rule: Rule) -> frozenset[str] | None:
        return _READER_OPERANDS if reading and rule.action == "publish" else None

    deciding: list[RuleRef] = []
    contributing: list[tuple[AgreementTerms, str]] = []
    failures: list[FailedConstraint] = []
    for dataset in resource.datasets:
        in_force = [t for t in ps.covering(dataset) if t.in_force(now)]
        if not in_force:
            failures.append(
                FailedConstraint(
                    None,
                    None,
                    "system:agreement-in-force",
                    "agreement",
                    "eq",
                    "an active agreement covering the dataset",
                    "none in force",
                    dataset,
                )
            )
            return _decision(
                Effect.DENY,
                Basis.NOT_PERMITTED,
                action,
                failures=failures,
                principal=principal,
                resource=resource,
            )
        for terms in in_force:
            for rule in terms.rules:
                if rule.kind != "prohibition" or rule.action != action:
                    continue
                if not ("*" in rule.targets or dataset in rule.targets) or not assignee_ok(rule):
                    continue
                if not _rule_failures(rule, terms, dataset, principal, resource, context, now):
                    ref = RuleRef(terms.id, terms.version, rule.id)
                    return _decision(
                        Effect.DENY,
                        Basis.FORBIDDEN,
                        action,
                        [ref],
                        agreements=[(terms.id, terms.version)],
                        principal=principal,
                        resource=resource,
                    )
        permitted_by: RuleRef | None = None
        dataset_failures: list[FailedConstraint] = []
        for terms in in_force:
            implied = (
                [] if reading else _implied_failures(action, terms, dataset, principal, resource)
            )
            for rule in terms.rules:
                if rule.kind != "permission" or not permission_action(rule):
                    continue
                if not ("*" in rule.targets or dataset in rule.targets):
                    continue
                if not assignee_ok(rule):
                    dataset_failures.append(
                        FailedConstraint(
                            terms.id,
                            terms.version,
                            rule.id,
                            "assignee",
                            "isAnyOf",
                            sorted(rule.assignees),
                            principal.organization_id,
                            dataset,
                        )
                    )
                    continue
                rule_failures = _rule_failures(
                    rule, terms, dataset, principal, resource, context, now, only(rule)
                )
                if not rule_failures and not implied:
                    permitted_by = RuleRef(terms.id, terms.version, rule.id)
                    contributing.append((terms, dataset))
                    break
                dataset_failures.extend(rule_failures)
            else:
                dataset_failures.extend(implied)
                continue
            break
        if permitted_by is None:
            if not dataset_failures:
                dataset_failures.append(
                    FailedConstraint(
                        in_force[0].id,
                        in_force[0].version,
                        "system:no-permission",
                        "action",
                        "eq",
                        f"a permission for '{action}'",
                        "no such rule",
                        dataset,
                    )
                )
            failures.extend(_unique(dataset_failures))
            return _decision(
                Effect.DENY,
                Basis.NOT_PERMITTED,
                action,
                failures=failures,
                agreements=[(t.id, t.version) for t in in_force],
                principal=principal,
                resource=resource,
            )
        deciding.append(permitted_by)
    return _decision(
        Effect.PERMIT,
        Basis.PERMITTED,
        action,
        deciding,
        obligations=_strictest(contributing),
        agreements=[(t.id, t.version) for t, _ in contributing],
        principal=principal,
        resource=resource,
    )
