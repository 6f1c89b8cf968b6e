"""Frozen value types of the policy engine: its inputs (principal, resource, context, compiled
agreement terms) and its output (a decision that carries its reasons)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from policy.vocabulary import GEOGRAPHY_RANK, PURPOSES, DisclosureMethod, FieldRole, RoundingScheme

Action = Literal[
    "submit",
    "compute",
    "publish",
    "link",
    "read",
    "export_records",
    "redisclose",
    "read_agreement",
    "read_audit",
]
ConstraintValue = str | int | float | datetime | tuple[str, ...]


class Effect(StrEnum):
    PERMIT = "permit"
    DENY = "deny"


class Basis(StrEnum):
    PERMITTED = "permitted"
    FORBIDDEN = "forbidden"  # a prohibition matched: forbid beats permit
    NOT_PERMITTED = "not_permitted"  # default deny: no permission matched


@dataclass(frozen=True, slots=True)
class Principal:
    client_id: str
    organization_id: str
    organization_kind: str
    scopes: frozenset[str] = frozenset()
    token_id: str | None = None


# The reserved recipient that stands for everyone: a release published to it is readable
# without a token. No organization may take this id, and an agreement admits the public only by
# naming it in a recipient constraint (it is never implied by a permission without one).
PUBLIC = "public"
PUBLIC_PRINCIPAL = Principal(
    client_id=PUBLIC,
    organization_id=PUBLIC,
    organization_kind=PUBLIC,
    scopes=frozenset({"indicators:read"}),
)


@dataclass(frozen=True, slots=True)
class Resource:
    """What the request touches. Only the attributes relevant to the action need be set."""

    datasets: tuple[str, ...] = ()
    agreement_id: str | None = None
    fields: frozenset[str] | None = None
    dimensions: frozenset[str] | None = None
    geography: str | None = None
    method: str | None = None
    linked_datasets: frozenset[str] = frozenset()
    # Datasets that only restrict who is counted (a linked cohort): they add no dimensions.
    cohort_datasets: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Context:
    purpose: str | None = None
    recipients: frozenset[str] | None = None


def _predicate(left: str, op: str, right: Any, rights: frozenset[Any]) -> Callable[[Any], bool]:
    """Compile one constraint into a predicate over the request's value of its left operand.

    A missing value (None) never satisfies a constraint. Purposes match through their lineage
    (a narrower purpose satisfies a broader one); geographic levels compare by coarseness.
    """
    if left == "purpose":
        lineages: dict[str, frozenset[str]] = {}

        def lineage(purpose: str) -> frozenset[str]:
            found = lineages.get(purpose)
            if found is None:
                seen = {purpose}
                current: str | None = purpose
                while (current := PURPOSES.get(current or "")) is not None and current not in seen:
                    seen.add(current)
                found = lineages[purpose] = frozenset(seen)
            return found

        if op in ("eq", "isAnyOf", "isPartOf"):
            return lambda a: a is not None and not lineage(str(a)).isdisjoint(rights)
        if op in ("neq", "isNoneOf"):
            return lambda a: a is not None and lineage(str(a)).isdisjoint(rights)
        return lambda a: False

    def as_set(a: Any) -> frozenset[Any]:
        if isinstance(a, frozenset):
            return a
        return frozenset(a) if isinstance(a, set | tuple | list) else frozenset((a,))

    # Request values are frozensets (or a single term, such as a method): no conversion on the
    # common paths.
    if op == "isAnyOf":
        return lambda a: (
            a is not None
            and (
                not a.isdisjoint(rights)
                if type(a) is frozenset
                else (a in rights if type(a) is str else not as_set(a).isdisjoint(rights))
            )
        )
    if op == "isAllOf":
        return lambda a: a is not None and rights <= (a if type(a) is frozenset else as_set(a))
    if op == "isNoneOf":
        return lambda a: (
            a is not None
            and (
                a.isdisjoint(rights)
                if type(a) is frozenset
                else (a not in rights if type(a) is str else as_set(a).isdisjoint(rights))
            )
        )
    if op == "isPartOf":
        return lambda a: (
            a is not None
            and (
                a <= rights
                if type(a) is frozenset
                else (a in rights if type(a) is str else as_set(a) <= rights)
            )
        )

    if left == "spatialGranularity":
        rank = GEOGRAPHY_RANK.get(str(right), -1)

        def key(a: Any) -> Any:
            return GEOGRAPHY_RANK.get(str(a), -1)

        r: Any = rank
    else:

        def key(a: Any) -> Any:
            return a

        r = right
    import operator as _op

    compare = {
        "eq": _op.eq,
        "neq": _op.ne,
        "lt": _op.lt,
        "lteq": _op.le,
        "gt": _op.gt,
        "gteq": _op.ge,
    }.get(op)
    if compare is None:
        return lambda a: False

    def check(a: Any) -> bool:
        if a is None:
            return False
        try:
            return bool(compare(key(a), r))
        except TypeError:
            return False

    return check


@dataclass(frozen=True, slots=True)
class Constraint:
    left: str
    operator: str
    right: ConstraintValue
    # Derived once, at compile time: evaluating a constraint must not allocate.
    right_set: frozenset[Any] = field(init=False, compare=False, repr=False)
    expected: Any = field(init=False, compare=False, repr=False)
    check: Callable[[Any], bool] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        right = self.right
        if isinstance(right, tuple):
            object.__setattr__(self, "right_set", frozenset(right))
            object.__setattr__(self, "expected", sorted(str(v) for v in right))
        else:
            object.__setattr__(self, "right_set", frozenset({right}))
            object.__setattr__(
                self, "expected", right.isoformat() if isinstance(right, datetime) else right
            )
        object.__setattr__(
            self, "check", _predicate(self.left, self.operator, right, self.right_set)
        )


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    kind: Literal["permission", "prohibition", "obligation"]
    action: str
    targets: frozenset[str]  # dataset names, or {"*"}
    assignees: frozenset[str]  # organization ids, or {"*"}
    constraints: tuple[Constraint, ...] = ()

    def applies_to(self, action: str, dataset: str, organization: str) -> bool:
        return (
            self.action == action
            and ("*" in self.targets or dataset in self.targets)
            and ("*" in self.assignees or organization in self.assignees)
        )


@dataclass(frozen=True, slots=True)
class FieldTerms:
    name: str
    type: str
    role: str
    required: bool = False
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    geography: str | None = None  # the geographic level a dimension field holds
    # The shared code list ``enum`` comes from (``"<id>@<version>"``) and the standard it follows.
    codelist: str | None = None
    codelist_standard: str | None = None


def label_of(value: object) -> str:
    """The category label of a declared value: booleans as ``true``/``false``, the rest as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class DerivedTerms:
    """A category computed from a record's fields by the filter language (a flag when
    ``when`` is set, else the first of ``categories`` whose condition holds, or ``otherwise``)."""

    name: str
    when: str | None = None
    categories: tuple[tuple[str, str], ...] = ()  # (label, condition)
    otherwise: str | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        if self.when is not None:
            return ("true", "false")
        return (
            *(label for label, _ in self.categories),
            *((self.otherwise,) if self.otherwise else ()),
        )


@dataclass(frozen=True, slots=True)
class DatasetTerms:
    name: str
    provider: str
    submitters: frozenset[str]  # organization ids or client ids allowed to submit
    fields: tuple[FieldTerms, ...]
    key: tuple[str, ...] = ()  # fields that identify a record; duplicates are refused
    period_field: str | None = None
    derived: tuple[DerivedTerms, ...] = ()
    # Combinations that cannot occur, each as sorted (attribute, label) pairs.
    structural_zeros: tuple[tuple[tuple[str, str], ...], ...] = ()
    # The agreement's submission schedule: (period, due date) pairs; a later submission warns.
    schedule: tuple[tuple[str, date], ...] = ()
    field_names: frozenset[str] = field(init=False, compare=False, repr=False)
    dimension_names: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_names", frozenset(f.name for f in self.fields))
        object.__setattr__(
            self,
            "dimension_names",
            frozenset(f.name for f in self.fields if f.role == FieldRole.DIMENSION),
        )

    def field(self, name: str) -> FieldTerms | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def derived_field(self, name: str) -> DerivedTerms | None:
        for d in self.derived:
            if d.name == name:
                return d
        return None


@dataclass(frozen=True, slots=True)
class Disclosure:
    methods: tuple[str, ...] = (DisclosureMethod.SUPPRESSION.value,)
    min_cell_size: int | None = None  # None: not stated, and a suppressed release is refused
    rounding: str = RoundingScheme.NONE.value
    top_code_percent: float | None = None
    bottom_code_percent: float | None = None
    epsilon_per_release: float | None = None
    epsilon_per_period: float | None = None
    budget_period: str | None = None
    max_contributions: int = 1
    # The share of one period's budget a single release may take (None: no cap beyond
    # epsilon_per_release).
    max_share_per_release: float | None = None


@dataclass(frozen=True, slots=True)
class PublicationReview:
    """The "no surprises" clause: the providers review a release before it is published, for
    ``window_days`` after it is computed; then it is published, or stays held (``on_timeout``)."""

    window_days: int
    on_timeout: Literal["publish", "hold"]


@dataclass(frozen=True, slots=True)
class AgreementTerms:
    """One agreement version compiled for the engine (see ``agreements.compile``)."""

    id: str
    version: int
    content_hash: str
    status: str
    effective: datetime
    expires: datetime | None
    parties: tuple[tuple[str, str], ...]  # (organization id, role)
    datasets: tuple[DatasetTerms, ...]
    rules: tuple[Rule, ...]
    disclosure: Disclosure = Disclosure()
    linkage_allowed: bool = False
    linkable_datasets: frozenset[str] = frozenset()
    grace_period_days: int = 30
    publication_review: PublicationReview | None = None

    def in_force(self, now: datetime) -> bool:
        return (
            self.status == "active"
            and self.effective <= now
            and (self.expires is None or now < self.expires)
        )

    def dataset(self, name: str) -> DatasetTerms | None:
        for d in self.datasets:
            if d.name == name:
                return d
        return None

    @property
    def party_ids(self) -> frozenset[str]:
        return frozenset(org for org, _ in self.parties)


class RuleRef(NamedTuple):
    # A named tuple, not a frozen dataclass: decisions create many and tuples are cheap to make.
    agreement_id: str
    version: int
    rule_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"agreement": self.agreement_id, "version": self.version, "rule": self.rule_id}


class FailedConstraint(NamedTuple):
    agreement_id: str | None
    version: int | None
    rule_id: str
    left_operand: str
    operator: str
    expected: Any
    actual: Any
    dataset: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "agreement": self.agreement_id,
            "version": self.version,
            "rule": self.rule_id,
            "dataset": self.dataset,
            "left_operand": self.left_operand,
            "operator": self.operator,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass(frozen=True, slots=True)
class Obligations:
    """What a permitted action must do; across agreements, the strictest of each kind wins."""

    # None when a contributing agreement states none: a suppressed release is then refused.
    min_cell_size: int | None = None
    rounding: str | None = None
    methods: tuple[str, ...] | None = None
    top_code_percent: float | None = None
    bottom_code_percent: float | None = None
    epsilon_per_release: float | None = None
    epsilon_per_period: float | None = None
    max_contributions: int | None = None
    fields_allowed: frozenset[str] | None = None
    linkage_allowed: bool | None = None
    delete_after_days: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    effect: Effect
    basis: Basis
    action: str
    deciding_rules: tuple[RuleRef, ...] = ()
    failed_constraints: tuple[FailedConstraint, ...] = ()
    obligations: Obligations = field(default_factory=Obligations)
    agreements: tuple[tuple[str, int], ...] = ()  # (agreement id, version) that contributed
    principal: Principal | None = field(default=None, compare=False, repr=False)
    resource: Resource | None = field(default=None, compare=False, repr=False)

    @property
    def permitted(self) -> bool:
        return self.effect is Effect.PERMIT

    def as_dict(self) -> dict[str, Any]:
        return {
            "effect": self.effect.value,
            "basis": self.basis.value,
            "action": self.action,
            "deciding_rules": [r.as_dict() for r in self.deciding_rules],
            "failed_constraints": [f.as_dict() for f in self.failed_constraints],
            "obligations": self.obligations.as_dict(),
            "agreements": [{"agreement": a, "version": v} for a, v in self.agreements],
        }
