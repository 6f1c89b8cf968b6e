"""Frozen value types of the policy engine: its inputs (principal, resource, context, compiled
agreement terms) and its output (a decision that carries its reasons)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

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


@dataclass(frozen=True, slots=True)
class Constraint:
    left: str
    operator: str
    right: ConstraintValue


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


@dataclass(frozen=True, slots=True)
class DatasetTerms:
    name: str
    provider: str
    submitters: frozenset[str]  # organization ids or client ids allowed to submit
    fields: tuple[FieldTerms, ...]
    key: tuple[str, ...] = ()  # fields that identify a record; duplicates are refused
    period_field: str | None = None

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)

    @property
    def dimension_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.role == "dimension")

    def field(self, name: str) -> FieldTerms | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True, slots=True)
class Disclosure:
    methods: tuple[str, ...] = ("suppression",)
    min_cell_size: int = 11
    rounding: str = "none"
    top_code_percent: float | None = None
    bottom_code_percent: float | None = None
    epsilon_per_release: float | None = None
    epsilon_per_period: float | None = None
    budget_period: str | None = None
    max_contributions: int = 1


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


@dataclass(frozen=True, slots=True)
class RuleRef:
    agreement_id: str
    version: int
    rule_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"agreement": self.agreement_id, "version": self.version, "rule": self.rule_id}


@dataclass(frozen=True, slots=True)
class FailedConstraint:
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
    explanation: str = ""

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
            "explanation": self.explanation,
        }
