"""The agreement document: what a partner shares, with whom, for what purpose, in what form and
for how long.

Shaped after ODRL 2.2 (parties as assigner and assignee; permission, prohibition and obligation
rules; constraints as leftOperand, operator and rightOperand over the closed vocabulary of
:mod:`policy.vocabulary`). Dataset fields are Frictionless Table Schema field descriptors with a
Backbone ``role``. Authors write YAML or JSON; the published JSON Schema is this model's.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agreements.codelists import parse_ref
from policy import vocabulary as vocab
from policy.vocabulary import DisclosureMethod, FieldRole, FieldType, RoundingScheme

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FieldConstraints(_Strict):
    """Frictionless Table Schema field constraints."""

    required: bool = False
    unique: bool = False
    enum: list[Scalar] | None = None
    # A shared code list, pinned: ``"<id>@<version>"`` (see agreements.codelists).
    codelist: str | None = Field(default=None, max_length=80)
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    # Bounded like every integer of the API: a length beyond any value's is meaningless, and a
    # 65-bit one overflowed the validator at submission time.
    min_length: int | None = Field(default=None, alias="minLength", ge=0, le=1 << 20)
    max_length: int | None = Field(default=None, alias="maxLength", ge=1, le=1 << 20)

    @field_validator("codelist")
    @classmethod
    def _codelist_pinned(cls, value: str | None) -> str | None:
        if value is not None:
            parse_ref(value)
        return value

    @model_validator(mode="after")
    def _enum_or_codelist(self) -> FieldConstraints:
        if self.enum is not None and self.codelist is not None:
            raise ValueError("give either enum or codelist, not both")
        return self

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            import re

            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return value


class FieldSpec(_Strict):
    name: FieldName
    title: str | None = None
    description: str | None = None
    type: FieldType = FieldType.STRING
    role: FieldRole
    geography: str | None = Field(
        default=None, description="geographic level held by a dimension, e.g. neighborhood"
    )
    constraints: FieldConstraints = FieldConstraints()


class DerivedCategory(_Strict):
    value: str = Field(min_length=1, max_length=64)
    when: str = Field(min_length=1, max_length=2000)


class DerivedField(_Strict):
    """A category every record falls in, computed from its fields by the filter language, and
    declared once here so that a threshold (a "ready" flag, a score band) is part of what may be
    published rather than something each request makes up.

    Either ``when`` (a flag: ``true`` where the condition holds, ``false`` elsewhere) or
    ``categories`` (the first whose condition holds) with ``otherwise`` for the rest.
    """

    name: FieldName
    title: str | None = None
    description: str | None = None
    when: str | None = Field(default=None, min_length=1, max_length=2000)
    categories: list[DerivedCategory] | None = Field(default=None, min_length=1, max_length=50)
    otherwise: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _shape(self) -> DerivedField:
        if (self.when is None) == (self.categories is None):
            raise ValueError(f"derived field {self.name}: give either when or categories")
        if self.categories is not None:
            if self.otherwise is None:
                raise ValueError(
                    f"derived field {self.name}: categories need an otherwise category, so that"
                    " every record falls in one"
                )
            values = [c.value for c in self.categories] + [self.otherwise]
            if len(set(values)) != len(values):
                raise ValueError(f"derived field {self.name} lists a category twice")
        elif self.otherwise is not None:
            raise ValueError(f"derived field {self.name}: otherwise goes with categories")
        return self

    @property
    def labels(self) -> tuple[str, ...]:
        """The published categories, in declaration order."""
        if self.categories is None:
            return ("true", "false")
        assert self.otherwise is not None
        return (*(c.value for c in self.categories), self.otherwise)


PeriodLabel = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")]


class SubmissionSchedule(_Strict):
    """When the provider's submission for each period is due. A submission that declares one of
    these periods and arrives after its date is accepted with a ``late`` warning in its
    data-quality report (never refused)."""

    due: dict[PeriodLabel, date] = Field(
        min_length=1,
        max_length=200,
        description="the last day (UTC) a submission for each period is on time, by period",
    )


class DatasetSpec(_Strict):
    name: Slug
    title: str | None = None
    description: str | None = None
    provider: Slug = Field(description="organization id of the party that provides the data")
    submitters: list[str] = Field(
        default_factory=list,
        description="organization or client ids allowed to submit; the provider by default",
    )
    primary_key: list[FieldName] = Field(default_factory=list, alias="primaryKey")
    period_field: FieldName | None = None
    fields: list[FieldSpec] = Field(min_length=1)
    derived: list[DerivedField] = Field(
        default_factory=list,
        max_length=20,
        description="categories computed from the fields, declared once (thresholds, bands, flags)",
    )
    submission_schedule: SubmissionSchedule | None = Field(
        default=None,
        description="the date each period's submission is due; a later one is accepted with a "
        "late warning in its data-quality report",
    )
    structural_zeros: list[dict[FieldName, Scalar]] = Field(
        default_factory=list,
        max_length=200,
        description=(
            "combinations of dimension or derived values that cannot occur: records with them are"
            " refused, and their cells are published as structural zeros"
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        names = [f.name for f in self.fields] + [d.name for d in self.derived]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {self.name} lists a field twice")
        for combination in self.structural_zeros:
            if not combination:
                raise ValueError(f"dataset {self.name} has an empty structural zero")
        for key in [*self.primary_key, *([self.period_field] if self.period_field else [])]:
            if key not in names:
                raise ValueError(f"dataset {self.name} refers to an unknown field {key}")
        return self


class Party(_Strict):
    org: Slug
    role: Literal["assigner", "assignee"]
    name: str | None = None


class Term(_Strict):
    effective: date | datetime
    expires: date | datetime

    @staticmethod
    def as_datetime(value: date | datetime) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime.combine(value, time.min, tzinfo=UTC)

    @model_validator(mode="after")
    def _ordered(self) -> Term:
        if self.as_datetime(self.expires) <= self.as_datetime(self.effective):
            raise ValueError("term.expires must be after term.effective")
        return self


class ConstraintSpec(_Strict):
    left_operand: str = Field(alias="leftOperand")
    operator: str
    right_operand: Scalar | list[Scalar] | datetime = Field(alias="rightOperand")


class RuleSpec(_Strict):
    id: Slug
    action: str
    target: str | list[str] = "*"
    assignee: str | list[str] = "*"
    constraint: list[ConstraintSpec] = Field(default_factory=list)
    description: str | None = None

    def targets(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)

    def assignees(self) -> list[str]:
        return [self.assignee] if isinstance(self.assignee, str) else list(self.assignee)


class Rules(_Strict):
    permission: list[RuleSpec] = Field(default_factory=list)
    prohibition: list[RuleSpec] = Field(default_factory=list)
    obligation: list[RuleSpec] = Field(default_factory=list)


class PrivacySpec(_Strict):
    epsilon_per_release: float = Field(gt=0, le=10)
    epsilon_per_period: float = Field(gt=0, le=50)
    period: Literal["calendar_year", "school_year", "agreement_term"] = "calendar_year"
    max_contributions: int = Field(default=1, ge=1, le=100)
    max_share_per_release: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="the largest share of a period's privacy budget (epsilon_per_period) one "
        "release may take, a fraction in (0, 1]; a release whose charge on any period's budget "
        "would exceed it is refused and nothing is charged. Without it, one release may take "
        "up to epsilon_per_release",
    )


def _default_methods() -> list[DisclosureMethod]:
    return [DisclosureMethod.SUPPRESSION]


class DisclosureSpec(_Strict):
    methods: list[DisclosureMethod] = Field(default_factory=_default_methods, min_length=1)
    min_cell_size: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="the fewest people a published cell may count; an agreement without one "
        "fails lint, and no suppressed release is published under it (no default is assumed)",
    )
    rounding: RoundingScheme = RoundingScheme.NONE
    top_code_percent: float | None = Field(default=None, gt=50, le=100)
    bottom_code_percent: float | None = Field(default=None, ge=0, lt=50)
    privacy: PrivacySpec | None = None


class LinkageSpec(_Strict):
    allowed: bool = False
    datasets: list[Slug] = Field(default_factory=list)


class RetentionSpec(_Strict):
    grace_period_days: int = Field(default=30, ge=0, le=3650)


class WithdrawalSpec(_Strict):
    allowed: bool = True
    notice_days: int = Field(default=0, ge=0, le=365)


class PublicationReviewSpec(_Strict):
    """The "no surprises" clause: the providers of the data see each release before it is
    published and approve or object; when the window passes without an answer the release is
    published (``publish``) or stays held (``hold``)."""

    required: bool = Field(
        default=True, description="the providers review every release before it is published"
    )
    window_days: int | None = Field(
        default=None,
        ge=1,
        le=365,
        description="days the providers have to review a release (lint: 1 to 60)",
    )
    on_timeout: Literal["publish", "hold"] | None = Field(
        default=None,
        description="what happens to a release nobody answered for when the window passes",
    )


# The structured term that ``publication_review_by_provider: true`` stood for in agreements stored
# before it existed: the providers review, for 10 days, and silence holds the release.
LEGACY_REVIEW_WINDOW_DAYS = 10
LEGACY_REVIEW_ON_TIMEOUT: Literal["hold"] = "hold"


class AgreementDocument(_Strict):
    """A data-sharing agreement as its authors write it (YAML or JSON)."""

    profile: Literal["backbone-odrl/1"] = "backbone-odrl/1"
    uid: Slug = Field(description="stable agreement id; versions share it")
    title: str = Field(min_length=1, max_length=300)
    legal_basis: str
    clauses: dict[str, str] = Field(
        default_factory=dict,
        description="statements required by the legal basis: purpose, scope, duration, ...",
    )
    parties: list[Party] = Field(min_length=2)
    term: Term
    datasets: list[DatasetSpec] = Field(min_length=1)
    rules: Rules
    disclosure: DisclosureSpec = DisclosureSpec()
    linkage: LinkageSpec = LinkageSpec()
    retention: RetentionSpec = RetentionSpec()
    withdrawal: WithdrawalSpec = WithdrawalSpec()
    publication_review: PublicationReviewSpec | None = Field(
        default=None,
        description="review of each release by the data providers before it is published",
    )
    publication_review_by_provider: bool = Field(
        default=False,
        description="superseded by publication_review: lint refuses true in a new agreement",
    )

    @model_validator(mode="after")
    def _references(self) -> AgreementDocument:
        orgs = [p.org for p in self.parties]
        if len(set(orgs)) != len(orgs):
            raise ValueError("a party is listed twice")
        if not any(p.role == "assigner" for p in self.parties):
            raise ValueError("an agreement needs at least one assigner (a data provider)")
        assigners = {p.org for p in self.parties if p.role == "assigner"}
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError("a dataset is listed twice")
        for d in self.datasets:
            if d.provider not in assigners:
                raise ValueError(
                    f"dataset {d.name}: provider {d.provider} is not an assigner party"
                )
        return self

    def canonical_json(self) -> bytes:
        """The canonical form whose hash every party approves (sorted keys, no whitespace)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def content_hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical_json()).hexdigest()

    @property
    def party_ids(self) -> frozenset[str]:
        return frozenset(p.org for p in self.parties)


def vocabulary_summary() -> dict[str, Any]:
    """The closed vocabulary, published alongside the JSON Schema."""
    return {
        "version": vocab.VERSION,
        "actions": sorted(vocab.ACTIONS),
        "left_operands": sorted(vocab.LEFT_OPERANDS),
        "operators": sorted(vocab.OPERATORS),
        "purposes": sorted(vocab.PURPOSES),
        "legal_bases": sorted(vocab.LEGAL_BASES),
        "geography_levels": list(vocab.GEOGRAPHY_LEVELS),
    }
