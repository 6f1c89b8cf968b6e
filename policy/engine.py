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

from policy.constraints import show
from policy.model import (
    PUBLIC,
    AgreementTerms,
    Basis,
    Constraint,
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
from policy.vocabulary import GEOGRAPHY_LEVELS, ROUNDING_STRICTNESS, OrganizationKind, is_steward

_NO_OBLIGATIONS = Obligations()
_READER_OPERANDS = frozenset({"recipient", "dateTime"})
_DATA_ACTIONS = frozenset(
    {"submit", "compute", "publish", "link", "read", "export_records", "redisclose"}
)
# The operators by which a recipient constraint names the recipients it admits.
_NAMING_OPERATORS = frozenset({"eq", "isAnyOf", "isPartOf", "isAllOf"})
# What a rule must say to admit the public; reported when it does not.
_PUBLIC_NAMED = Constraint("recipient", "isAnyOf", (PUBLIC,))


RuleIndex = dict[tuple[str, str], tuple[Rule, ...]]


class PolicySet:
    """Compiled agreement terms indexed by dataset and by agreement id, with each agreement's
    rules grouped by (kind, action) so that a decision looks only at rules that can apply."""

    __slots__ = ("_by_dataset", "_by_id", "_obligations", "_rules", "_targeted", "agreements")

    def __init__(self, agreements: Iterable[AgreementTerms]) -> None:
        self.agreements: tuple[AgreementTerms, ...] = tuple(agreements)
        by_dataset: dict[str, list[AgreementTerms]] = {}
        by_id: dict[str, list[AgreementTerms]] = {}
        self._rules: dict[tuple[str, int], RuleIndex] = {}
        # Memoized views; a policy set never changes, so they never go stale.
        self._targeted: dict[tuple[str, int, str, str, str], tuple[Rule, ...]] = {}
        self._obligations: dict[tuple[tuple[str, int, str], ...], Obligations] = {}
        for terms in self.agreements:
            by_id.setdefault(terms.id, []).append(terms)
            for ds in terms.datasets:
                by_dataset.setdefault(ds.name, []).append(terms)
            index: dict[tuple[str, str], list[Rule]] = {}
            for rule in terms.rules:
                index.setdefault((rule.kind, rule.action), []).append(rule)
            self._rules[(terms.id, terms.version)] = {k: tuple(v) for k, v in index.items()}
        self._by_dataset = {k: tuple(v) for k, v in by_dataset.items()}
        self._by_id = {k: tuple(v) for k, v in by_id.items()}

    def covering(self, dataset: str) -> tuple[AgreementTerms, ...]:
        return self._by_dataset.get(dataset, ())

    def versions(self, agreement_id: str) -> tuple[AgreementTerms, ...]:
        return self._by_id.get(agreement_id, ())

    def rules(
        self, terms: AgreementTerms, kind: str, action: str, dataset: str
    ) -> tuple[Rule, ...]:
        """The rules of ``terms`` of this kind and action that target ``dataset`` (or every one)."""
        key = (terms.id, terms.version, kind, action, dataset)
        found = self._targeted.get(key)
        if found is None:
            candidates = self._rules[(terms.id, terms.version)].get((kind, action), ())
            found = tuple(r for r in candidates if "*" in r.targets or dataset in r.targets)
            self._targeted[key] = found
        return found

    def obligations(self, contributing: Sequence[tuple[AgreementTerms, str]]) -> Obligations:
        """The strictest obligations of the contributing (terms, dataset) pairs, memoized."""
        key = tuple((t.id, t.version, d) for t, d in contributing)
        found = self._obligations.get(key)
        if found is None:
            found = self._obligations[key] = _strictest(contributing)
        return found


def _actuals(resource: Resource, context: Context, now: datetime) -> dict[str, Any]:
    """The request's value of every left operand, computed once per decision."""
    geography = resource.geography
    if geography is None and resource.dimensions is not None:
        # A table with no geographic dimension covers the whole area: the coarsest level.
        geography = GEOGRAPHY_LEVELS[-1]
    return {
        "purpose": context.purpose,
        "recipient": context.recipients,
        "dimension": resource.dimensions,
        "field": resource.fields,
        "spatialGranularity": geography,
        "disclosureMethod": resource.method,
        "dateTime": now,
        "linkedDataset": resource.linked_datasets,
    }


def _names_public(rule: Rule) -> bool:
    """Whether a recipient constraint of ``rule`` names the public: publishing to everyone is
    never implied by a rule without one, nor by one that only excludes others (isNoneOf)."""
    return any(
        c.left == "recipient" and c.operator in _NAMING_OPERATORS and PUBLIC in c.right_set
        for c in rule.constraints
    )


def _passes(rule: Rule, actuals: dict[str, Any], only: frozenset[str] | None) -> bool:
    for c in rule.constraints:
        if only is not None and c.left not in only:
            continue
        if not c.check(actuals.get(c.left)):
            return False
    return True


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


def _strictest(parts: Sequence[tuple[AgreementTerms, str]]) -> Obligations:
    k: int | None = None
    k_missing = False  # a contributing agreement states no minimum cell size
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
        if d.min_cell_size is None:
            k_missing = True
        else:
            k = d.min_cell_size if k is None else max(k, d.min_cell_size)
        if rounding is None or ROUNDING_STRICTNESS[d.rounding] > ROUNDING_STRICTNESS[rounding]:
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
        # Fail closed: one agreement without a threshold leaves the release without one, and
        # the release is refused (never published under a threshold assumed here).
        min_cell_size=None if k_missing else k,
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
    return Decision(
        effect=effect,
        basis=basis,
        action=action,
        deciding_rules=tuple(rules),
        failed_constraints=tuple(failures),
        obligations=obligations or _NO_OBLIGATIONS,
        agreements=tuple(dict.fromkeys(agreements)),
        principal=principal,
        resource=resource,
    )


def _decide_agreement_read(principal: Principal, resource: Resource, ps: PolicySet) -> Decision:
    versions = ps.versions(resource.agreement_id or "")
    is_party = any(principal.organization_id in t.party_ids for t in versions)
    steward = is_steward(principal.organization_kind)
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
    if principal.organization_kind == OrganizationKind.AUDITOR:
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
        OrganizationKind.AUDITOR.value,
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
    permission_actions = ("publish", "read") if reading else (action,)
    to_public = context.recipients is not None and PUBLIC in context.recipients
    org = principal.organization_id
    actuals = _actuals(resource, context, now)
    cohort_actuals = {**actuals, "dimension": frozenset()} if resource.cohort_datasets else actuals

    deciding: list[RuleRef] = []
    contributing: list[tuple[AgreementTerms, str]] = []
    for dataset in resource.datasets:
        in_force = [t for t in ps.covering(dataset) if t.in_force(now)]
        if not in_force:
            failure = FailedConstraint(
                None,
                None,
                "system:agreement-in-force",
                "agreement",
                "eq",
                "an active agreement covering the dataset",
                "none in force",
                dataset,
            )
            return _decision(
                Effect.DENY,
                Basis.NOT_PERMITTED,
                action,
                failures=[failure],
                principal=principal,
                resource=resource,
            )
        values = cohort_actuals if dataset in resource.cohort_datasets else actuals
        for terms in in_force:
            for rule in ps.rules(terms, "prohibition", action, dataset):
                if ("*" in rule.assignees or org in rule.assignees) and _passes(rule, values, None):
                    return _decision(
                        Effect.DENY,
                        Basis.FORBIDDEN,
                        action,
                        [RuleRef(terms.id, terms.version, rule.id)],
                        agreements=[(terms.id, terms.version)],
                        principal=principal,
                        resource=resource,
                    )
        # One pass: each candidate rule's failed constraints are noted (cheaply, as the
        # constraints themselves); reasons are only built if nothing permits.
        permitted_by: RuleRef | None = None
        noted: list[tuple[AgreementTerms, Rule, list[Constraint] | None]] = []
        for terms in in_force:
            implied_ok: bool | None = None
            for rule_action in permission_actions:
                reader_of_publish = reading and rule_action == "publish"
                for rule in ps.rules(terms, "permission", rule_action, dataset):
                    if not reader_of_publish and not (
                        "*" in rule.assignees or org in rule.assignees
                    ):
                        noted.append((terms, rule, None))
                        continue
                    if reader_of_publish:
                        failed = [
                            c
                            for c in rule.constraints
                            if c.left in _READER_OPERANDS and not c.check(values.get(c.left))
                        ]
                    else:
                        failed = [c for c in rule.constraints if not c.check(values.get(c.left))]
                    if (
                        to_public
                        and not _names_public(rule)
                        and all(c.left != "recipient" for c in failed)
                    ):
                        failed.append(_PUBLIC_NAMED)
                    if failed:
                        noted.append((terms, rule, failed))
                        continue
                    if implied_ok is None:
                        implied_ok = reading or not _implied_failures(
                            action, terms, dataset, principal, resource
                        )
                    if implied_ok:
                        permitted_by = RuleRef(terms.id, terms.version, rule.id)
                        break
                if permitted_by is not None:
                    break
            if permitted_by is not None:
                contributing.append((terms, dataset))
                break
        if permitted_by is not None:
            deciding.append(permitted_by)
            continue
        return _decision(
            Effect.DENY,
            Basis.NOT_PERMITTED,
            action,
            failures=_reasons(
                noted, in_force, action, dataset, values, org, reading, principal, resource
            ),
            agreements=[(t.id, t.version) for t in in_force],
            principal=principal,
            resource=resource,
        )
    return _decision(
        Effect.PERMIT,
        Basis.PERMITTED,
        action,
        deciding,
        obligations=ps.obligations(contributing),
        agreements=[(t.id, t.version) for t, _ in contributing],
        principal=principal,
        resource=resource,
    )


def _reasons(
    noted: Sequence[tuple[AgreementTerms, Rule, list[Constraint] | None]],
    in_force: Sequence[AgreementTerms],
    action: str,
    dataset: str,
    values: dict[str, Any],
    org: str,
    reading: bool,
    principal: Principal,
    resource: Resource,
) -> list[FailedConstraint]:
    """The failed constraints of a denial, each with expected and actual values."""
    failures: list[FailedConstraint] = []
    shown: dict[str, Any] = {}
    for terms, rule, failed in noted:
        if failed is None:
            failures.append(
                FailedConstraint(
                    terms.id,
                    terms.version,
                    rule.id,
                    "assignee",
                    "isAnyOf",
                    sorted(rule.assignees),
                    org,
                    dataset,
                )
            )
            continue
        for c in failed:
            if c.left not in shown:
                shown[c.left] = show(values.get(c.left))
            failures.append(
                FailedConstraint(
                    terms.id,
                    terms.version,
                    rule.id,
                    c.left,
                    c.operator,
                    c.expected,
                    shown[c.left],
                    dataset,
                )
            )
    if not reading:
        for terms in in_force:
            failures.extend(_implied_failures(action, terms, dataset, principal, resource))
    if not failures:
        failures.append(
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
    return failures
