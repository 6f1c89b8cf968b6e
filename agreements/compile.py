"""Compile an agreement document into the policy engine's frozen terms."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from agreements.codelists import ResolvedCodeList, field_enum
from agreements.document import (
    LEGACY_REVIEW_ON_TIMEOUT,
    LEGACY_REVIEW_WINDOW_DAYS,
    AgreementDocument,
    ConstraintSpec,
    RuleSpec,
    Term,
)
from policy.model import (
    AgreementTerms,
    Constraint,
    ConstraintValue,
    DatasetTerms,
    DerivedTerms,
    Disclosure,
    FieldTerms,
    PublicationReview,
    Rule,
    label_of,
)


def _right(spec: ConstraintSpec) -> ConstraintValue:
    value = spec.right_operand
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if spec.left_operand == "dateTime" and isinstance(value, str):
        return Term.as_datetime(datetime.fromisoformat(value))
    if isinstance(value, bool):
        return str(value).lower()
    return value


def _rule(spec: RuleSpec, kind: str) -> Rule:
    return Rule(
        id=spec.id,
        kind=kind,  # type: ignore[arg-type]
        action=spec.action,
        targets=frozenset(spec.targets()),
        assignees=frozenset(spec.assignees()),
        constraints=tuple(
            Constraint(c.left_operand, c.operator, _right(c)) for c in spec.constraint
        ),
    )


def publication_review(document: AgreementDocument) -> PublicationReview | None:
    """The review term a version is held to. A version stored with the superseded
    ``publication_review_by_provider: true`` is held to what it promised, with the documented
    defaults (lint refuses that spelling in anything new)."""
    spec = document.publication_review
    if spec is not None:
        if not spec.required:
            return None
        return PublicationReview(
            window_days=spec.window_days or LEGACY_REVIEW_WINDOW_DAYS,
            on_timeout=spec.on_timeout or LEGACY_REVIEW_ON_TIMEOUT,
        )
    if document.publication_review_by_provider:
        return PublicationReview(LEGACY_REVIEW_WINDOW_DAYS, LEGACY_REVIEW_ON_TIMEOUT)
    return None


def compile_terms(
    document: AgreementDocument,
    *,
    version: int,
    status: str,
    content_hash: str | None = None,
    codelists: Mapping[str, ResolvedCodeList] | None = None,
) -> AgreementTerms:
    """Build :class:`policy.model.AgreementTerms` for one version of an agreement.

    A field that refers to a code list gets the list's codes as its ``enum``, so that
    validation, the dataset schema, the template and the aggregation's categories read them
    exactly like declared values; ``codelists`` must hold every version the document refers to
    (:class:`agreements.codelists.UnresolvedCodeList` otherwise: never "any value")."""

    def standard(ref: str | None) -> str | None:
        found = (codelists or {}).get(ref) if ref is not None else None
        return found.standard if found is not None else None

    datasets = tuple(
        DatasetTerms(
            name=d.name,
            provider=d.provider,
            submitters=frozenset(d.submitters or [d.provider]),
            fields=tuple(
                FieldTerms(
                    name=f.name,
                    type=f.type,
                    role=f.role,
                    required=f.constraints.required,
                    enum=tuple(allowed)
                    if (allowed := field_enum(f.constraints, codelists)) is not None
                    else None,
                    minimum=f.constraints.minimum,
                    maximum=f.constraints.maximum,
                    pattern=f.constraints.pattern,
                    min_length=f.constraints.min_length,
                    max_length=f.constraints.max_length,
                    geography=f.geography,
                    codelist=f.constraints.codelist,
                    codelist_standard=standard(f.constraints.codelist),
                )
                for f in d.fields
            ),
            key=tuple(d.primary_key),
            period_field=d.period_field,
            derived=tuple(
                DerivedTerms(
                    name=x.name,
                    when=x.when,
                    categories=tuple((c.value, c.when) for c in x.categories or ()),
                    otherwise=x.otherwise,
                )
                for x in d.derived
            ),
            structural_zeros=tuple(
                tuple(sorted((name, label_of(value)) for name, value in combination.items()))
                for combination in d.structural_zeros
            ),
            schedule=tuple(sorted(d.submission_schedule.due.items()))
            if d.submission_schedule is not None
            else (),
        )
        for d in document.datasets
    )
    rules = (
        *(_rule(r, "permission") for r in document.rules.permission),
        *(_rule(r, "prohibition") for r in document.rules.prohibition),
        *(_rule(r, "obligation") for r in document.rules.obligation),
    )
    disc = document.disclosure
    privacy = disc.privacy
    return AgreementTerms(
        id=document.uid,
        version=version,
        content_hash=content_hash or document.content_hash(),
        status=status,
        effective=Term.as_datetime(document.term.effective),
        expires=Term.as_datetime(document.term.expires),
        parties=tuple((p.org, p.role) for p in document.parties),
        datasets=datasets,
        rules=rules,
        disclosure=Disclosure(
            methods=tuple(disc.methods),
            min_cell_size=disc.min_cell_size,
            rounding=disc.rounding,
            top_code_percent=disc.top_code_percent,
            bottom_code_percent=disc.bottom_code_percent,
            epsilon_per_release=privacy.epsilon_per_release if privacy else None,
            epsilon_per_period=privacy.epsilon_per_period if privacy else None,
            budget_period=privacy.period if privacy else None,
            max_contributions=privacy.max_contributions if privacy else 1,
            max_share_per_release=privacy.max_share_per_release if privacy else None,
        ),
        linkage_allowed=document.linkage.allowed,
        linkable_datasets=frozenset(document.linkage.datasets),
        grace_period_days=document.retention.grace_period_days,
        publication_review=publication_review(document),
    )
