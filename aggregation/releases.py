"""Releases: a definition computed over the submissions in force under the strictest
disclosure obligations, and stored immutably (asking for the same release again returns the
stored one).

A suppressed release is protected jointly with everything published from the same records
(:mod:`aggregation.population`, :mod:`disclosure.joint`); a differentially private one charges
the privacy budget (:mod:`aggregation.ledger`) in the transaction that stores it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregation import notices, review
from aggregation.definition import IndicatorDefinition
from aggregation.definitions import (
    ECHOABLE_NAME,
    IndicatorInvalid,
    check_performance,
    dataset_terms,
    field_specs,
    get_definition,
    identifier_field,
    publish_decision,
    suppressed_shape,
)
from aggregation.ledger import Charge, charge, period_of
from aggregation.ledger import preview as preview_charges
from aggregation.models import IndicatorVersion, Release
from aggregation.population import Sources, protect_release
from aggregation.progress import COMPUTING, READING, STORING, Progress
from aggregation.stored import release_cells, release_parameters
from agreements.expressions import CompiledFilter, compile_filter
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.db import end_reads
from core.errors import PolicyDenied
from core.ids import new_id
from core.keys import MasterKey
from disclosure import suppression
from disclosure.joint import Obligations, Shape
from disclosure.vocabulary import Unit
from policy.engine import PolicySet
from policy.explain import explanation
from policy.model import AgreementTerms, DatasetTerms, Decision
from policy.review import Reviewer, reviewers
from policy.vocabulary import DisclosureMethod, FieldRole, FieldType, RoundingScheme
from records.models import Submission
from records.service import in_scope, load_frame

CODE_VERSION = "backbone-aggregation/2"
_IN_NUMERATOR = "__in_numerator"
_DP_PERSON_SEED = 0xD9_2026


@dataclass(frozen=True)
class ReleaseRequest:
    dimensions: tuple[str, ...] | None = None
    method: str | None = None


@dataclass(frozen=True)
class _Decided:
    """A release request once checked and decided, before any record is read."""

    version: IndicatorVersion
    definition: IndicatorDefinition
    dims: tuple[str, ...]
    method: str
    shape: Shape | None
    decision: Decision
    base: Sequence[Submission]
    cohort: Sequence[Submission]
    used: list[str]
    key: str
    stored: Release | None


@dataclass(frozen=True)
class ReleasePreview:
    """What a release request would do, found without doing it (see :func:`preview_release`)."""

    indicator_id: str
    indicator_version: int
    method: str
    dimensions: tuple[str, ...]
    agreements: tuple[tuple[str, int], ...]
    stored_release: str | None
    epsilon: float | None
    charges: list[dict[str, Any]]
    submissions: int


@dataclass(frozen=True)
class _Computation:
    """What a release is computed from, once the request is decided and not stored yet."""

    session: Session
    ctx: RequestContext
    master: MasterKey
    policy: PolicySet
    decision: Decision
    definition: IndicatorDefinition
    dims: tuple[str, ...]
    base: Sequence[Submission]
    cohort: Sequence[Submission]
    release_id: str
    key: str
    progress: Progress


def _no_progress(phase: str, fraction: float) -> None:
    return None


def _request_key(
    version: IndicatorVersion, dims: Sequence[str], method: str, submissions: Sequence[str]
) -> str:
    """Same definition, dimensions, method and data: the same release, never a fresh one."""
    raw = json.dumps(
        {
            "definition": version.content_hash,
            "version": version.version,
            "dimensions": list(dims),
            "method": method,
            "submissions": sorted(submissions),
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(raw).hexdigest()


def _audit_counts(summary: dict[str, Any]) -> dict[str, int | float]:
    """The suppression audit's figures for the audit log (auditors see them; readers do not:
    they depend on the data)."""
    out: dict[str, int | float] = {}
    for name, value in summary.items():
        if isinstance(value, bool):
            out[f"audit_{name}"] = int(value)
        elif isinstance(value, int | float):
            out[f"audit_{name}"] = value
    return out


def _decide(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    indicator_id: str,
    request: ReleaseRequest,
) -> _Decided:
    """Check the request and decide it, then find the submissions it would use and whether the
    same release is stored. Reads no record: a refusal here says nothing of the data."""
    assert ctx.principal is not None
    version, definition = get_definition(session, indicator_id)
    dims = (
        tuple(request.dimensions)
        if request.dimensions is not None
        else tuple(definition.dimensions)
    )
    unknown = [d for d in dims if d not in definition.dimensions]
    if unknown:
        names = ", ".join(
            f"'{d}'" if ECHOABLE_NAME.match(d) else "(unprintable)" for d in unknown[:10]
        )
        raise IndicatorInvalid(
            f"Unknown dimension(s) {names}; the indicator's dimensions are "
            f"{', '.join(definition.dimensions)}."
        )
    method = request.method or definition.method
    shape: Shape | None = None
    if method == DisclosureMethod.SUPPRESSION:
        if definition.unit == Unit.MEAN:
            raise IndicatorInvalid("Means are released by differential privacy only.")
        # From the request alone, before anything is read: a refusal says nothing of the data.
        shape = suppressed_shape(policy, definition, dims, ctx.now)
    decision = publish_decision(ctx.principal, policy, definition, dims, method, ctx.now)
    if not decision.permitted:
        raise PolicyDenied(explanation(decision), decision=decision)
    # Agreements change after a definition is made: a measure is checked again when released.
    check_performance(session, policy, definition, ctx.now)
    agreement_ids = frozenset(a for a, _ in decision.agreements)
    base = in_scope(session, definition.dataset, agreement_ids, ctx.now)
    cohort = (
        in_scope(session, definition.cohort.dataset, agreement_ids, ctx.now)
        if definition.cohort
        else []
    )
    used = [s.id for s in base] + [s.id for s in cohort]
    key = _request_key(version, dims, method, used)
    stored = session.scalars(
        select(Release).where(Release.indicator_id == indicator_id, Release.request_key == key)
    ).first()
    return _Decided(
        version, definition, dims, method, shape, decision, base, cohort, used, key, stored
    )


def _min_cell_size(decision: Decision) -> int:
    k = decision.obligations.min_cell_size
    if k is None:
        # Fail closed: a publication without a threshold is not a suppressed release.
        raise IndicatorInvalid(
            "A contributing agreement states no minimum cell size; nothing is suppressed "
            "and published without one."
        )
    return k


def _returned(session: Session, ctx: RequestContext, decided: _Decided) -> Release:
    """The stored release for a request, audited as returned (and settled if held)."""
    existing = decided.stored
    assert existing is not None
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_CREATE,
            resource_type="release",
            resource_id=existing.id,
            decision=decided.decision,
            detail="returned the stored release",
        ),
    )
    review.settle(session, ctx, existing)
    return existing


def stored_release(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    indicator_id: str,
    request: ReleaseRequest,
) -> tuple[Release | None, str]:
    """Check and decide a release request as :func:`create_release` does (refused the same
    way), reading no record: the stored release for it (audited as returned), or ``None``; and
    the request's key (the same definition, dimensions, method and data)."""
    decided = _decide(session, ctx, policy, indicator_id, request)
    if decided.stored is not None:
        return _returned(session, ctx, decided), decided.key
    if decided.method == DisclosureMethod.SUPPRESSION:
        _min_cell_size(decided.decision)
    return None, decided.key


def create_release(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    policy: PolicySet,
    indicator_id: str,
    request: ReleaseRequest,
    progress: Progress | None = None,
) -> tuple[Release, bool]:
    """Compute and store a release, or return the stored one for the same request.

    ``progress`` is told each phase as it starts (see :mod:`aggregation.progress`), always
    between the session's transactions."""
    assert ctx.principal is not None
    report = progress or _no_progress
    report(READING, 0.1)
    decided = _decide(session, ctx, policy, indicator_id, request)
    version, definition, dims, method = (
        decided.version,
        decided.definition,
        decided.dims,
        decided.method,
    )
    shape, decision, base, cohort = decided.shape, decided.decision, decided.base, decided.cohort
    used, key, existing = decided.used, decided.key, decided.stored
    if existing is not None:
        return _returned(session, ctx, decided), False

    release_id = new_id("rel")
    job = _Computation(
        session,
        ctx,
        master,
        policy,
        decision,
        definition,
        dims,
        base,
        cohort,
        release_id,
        key,
        report,
    )
    audit: dict[str, int | float] = {}
    population: str | None = None
    publication: dict[str, Any] | None = None
    sealed: bytes | None = None
    if method == DisclosureMethod.DIFFERENTIAL_PRIVACY:
        outcome = _dp_release(job)
        if isinstance(outcome, Release):
            return outcome, False
        cells, parameters = outcome
    else:
        assert shape is not None
        ob = decision.obligations
        k = _min_cell_size(decision)
        own = {definition.dataset: base}
        if definition.cohort is not None:
            own[definition.cohort.dataset] = cohort
        now = ctx.now

        def scope(dataset: str) -> Sequence[Submission]:
            # This release's datasets: under the agreements that permit it. A cohort of an
            # earlier release only: under every agreement in force that covers it.
            if dataset in own:
                return own[dataset]
            ids = frozenset(t.id for t in policy.covering(dataset) if t.in_force(now))
            return in_scope(session, dataset, ids, now)

        result = protect_release(
            session,
            master,
            Sources(lambda name: dataset_terms(policy, name, now), scope),
            shape,
            Obligations(
                k=k,
                rounding=ob.rounding or RoundingScheme.NONE,
                top_code_percent=ob.top_code_percent,
                bottom_code_percent=ob.bottom_code_percent,
            ),
            definition.unit,
            release_id,
            report,
        )
        report(STORING, 0.9)
        cells = release_cells(result.protection)
        parameters = release_parameters(result.protection)
        audit = _audit_counts(result.proof)
        # Which withheld cells are small is for auditors only (readers see "suppressed").
        for withheld in (suppression.PRIMARY, suppression.SECONDARY):
            audit[withheld] = int((result.protection.status == withheld).sum())
        population = definition.dataset
        publication = result.publication
        sealed = result.sealed_counts
        # The computation held no database connection (see protect_release): the same request
        # may have been stored meanwhile, and releases are immutable.
        stored = session.scalars(
            select(Release).where(Release.indicator_id == indicator_id, Release.request_key == key)
        ).first()
        if stored is not None:
            return stored, False
    release = Release(
        id=release_id,
        indicator_id=indicator_id,
        indicator_version=version.version,
        request_key=key,
        method=method,
        dimensions=list(dims),
        parameters=parameters,
        cells=cells,
        provenance={
            "definition": {
                "id": indicator_id,
                "version": version.version,
                "hash": version.content_hash,
            },
            "agreements": [{"agreement": a, "version": v} for a, v in decision.agreements],
            "deciding_rules": [r.as_dict() for r in decision.deciding_rules],
            "submissions": used,
            "method": method,
            "code_version": CODE_VERSION,
            "computed_at": ctx.now.isoformat(),
        },
        recipients=sorted(definition.recipients),
        created_at=ctx.now,
        created_by=ctx.principal.client_id,
        population=population,
        publication=publication,
        sealed_counts=sealed,
        state=review.PUBLISHED,
        published_at=ctx.now,
    )
    session.add(release)
    session.flush()
    suppressed = sum(1 for c in cells if c["status"] == suppression.SUPPRESSED)
    unreliable = sum(1 for c in cells if c["status"] == suppression.LOW_RELIABILITY)
    event = record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_CREATE,
            resource_type="release",
            resource_id=release.id,
            decision=decision,
            purpose=definition.purpose,
            counts={
                "cells": len(cells),
                suppression.SUPPRESSED: suppressed,
                suppression.LOW_RELIABILITY: unreliable,
                "submissions": len(used),
                **(
                    {"epsilon": parameters["epsilon"]}
                    if method == DisclosureMethod.DIFFERENTIAL_PRIVACY
                    else {}
                ),
                **audit,
            },
        ),
    )
    release.audit_index = event.idx
    session.flush()
    notices.budgets_charged(
        session,
        ctx,
        release,
        _dp_charges(policy, decision, definition, release.parameters["epsilon"], ctx.now)
        if method == DisclosureMethod.DIFFERENTIAL_PRIVACY
        else [],
    )
    # Stored (and, by differential privacy, charged) either way: the noise has been drawn.
    held_by = _reviewers(policy, decision, definition)
    if held_by:
        review.held(session, ctx, release, held_by, decision)
    else:
        review.published(session, ctx, release, "no review required")
    session.flush()
    return release, True


def _reviewers(
    policy: PolicySet, decision: Decision, definition: IndicatorDefinition
) -> tuple[Reviewer, ...]:
    """Who must review the release before it is published: the providers of the datasets it
    counts, under each contributing agreement version that requires review."""
    contributing: list[AgreementTerms] = []
    for agreement_id, version in decision.agreements:
        terms = next((t for t in policy.versions(agreement_id) if t.version == version), None)
        if terms is not None:
            contributing.append(terms)
    return reviewers(contributing, definition.datasets)


def _dp_charges(
    policy: PolicySet,
    decision: Decision,
    definition: IndicatorDefinition,
    epsilon: float,
    now: datetime,
) -> list[Charge]:
    """One charge per (contributing agreement, dataset, period of data the release covers).

    Budgets are per period of the data: a release covering five school years spends its loss
    from each of their budgets; a new school year starts with a fresh one.
    """
    charges: list[Charge] = []
    for agreement_id, version in decision.agreements:
        terms = next((t for t in policy.versions(agreement_id) if t.version == version), None)
        if terms is None:  # pragma: no cover - decisions only name versions in the policy set
            continue
        limit = terms.disclosure.epsilon_per_period
        if limit is None:
            raise IndicatorInvalid(f"Agreement {agreement_id} sets no privacy budget.")
        for name in definition.datasets:
            ds = terms.dataset(name)
            if ds is None:
                continue
            kind = terms.disclosure.budget_period
            period_field = ds.field(ds.period_field) if ds.period_field else None
            if kind == "agreement_term":
                periods = ["term"]
            elif period_field is not None and period_field.enum:
                periods = [str(v) for v in period_field.enum]
            else:
                periods = [period_of(kind, now)]
            share = terms.disclosure.max_share_per_release
            charges.extend(
                Charge(agreement_id, name, period, epsilon, limit, share) for period in periods
            )
    return charges


def _dp_plan(
    policy: PolicySet,
    decision: Decision,
    definition: IndicatorDefinition,
    dims: tuple[str, ...],
    now: datetime,
) -> tuple[Any, list[Charge]]:
    """The OpenDP plan of a release (no data, no noise) and the charges its exact loss makes."""
    # OpenDP's prelude imports its scikit-learn extras (seconds at every start): only here.
    from disclosure import dp

    epsilon = decision.obligations.epsilon_per_release
    if epsilon is None:
        raise IndicatorInvalid("The contributing agreements set no privacy loss per release.")
    ds = dataset_terms(policy, definition.dataset, now)
    categories = tuple(tuple(str(v) for v in (ds.field(d).enum or ())) for d in dims)  # type: ignore[union-attr]
    plan = dp.plan(
        dims, categories, definition.unit, epsilon, decision.obligations.max_contributions or 1
    )
    return plan, _dp_charges(policy, decision, definition, plan.epsilon, now)


def preview_release(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    indicator_id: str,
    request: ReleaseRequest,
) -> ReleasePreview:
    """What :func:`create_release` would do for ``request``, without doing it.

    The same checks and policy decision, refused the same way (the same errors, the ledger's
    included); then the method, and for a differentially private release the budgets it would
    charge with what is spent and what would remain. Stores nothing, charges nothing, reads no
    record and draws no noise; records one audit event (a preview reads budget state).
    """
    decided = _decide(session, ctx, policy, indicator_id, request)
    definition, decision = decided.definition, decided.decision
    epsilon: float | None = None
    charges: list[dict[str, Any]] = []
    if decided.stored is None:
        if decided.method == DisclosureMethod.DIFFERENTIAL_PRIVACY:
            plan, planned = _dp_plan(policy, decision, definition, decided.dims, ctx.now)
            epsilon = plan.epsilon
            charges = preview_charges(session, planned)
        else:
            _min_cell_size(decision)
    result = ReleasePreview(
        indicator_id=indicator_id,
        indicator_version=decided.version.version,
        method=decided.method,
        dimensions=decided.dims,
        agreements=tuple(decision.agreements),
        stored_release=decided.stored.id if decided.stored is not None else None,
        epsilon=epsilon,
        charges=charges,
        submissions=len(decided.used),
    )
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_PREVIEW,
            resource_type="indicator",
            resource_id=indicator_id,
            decision=decision,
            purpose=definition.purpose,
            counts={
                "budgets": len(charges),
                "submissions": len(decided.used),
                **({"epsilon": epsilon} if epsilon is not None else {}),
            },
            detail=(
                f"would return the stored release {decided.stored.id}"
                if decided.stored is not None
                else f"would compute a release by {decided.method}"
            ),
        ),
    )
    return result


def _derived_columns(ds: DatasetTerms) -> dict[str, CompiledFilter]:
    """Each derived category of ``ds`` as a column computed from the stored fields (a flag as a
    boolean, categories as their labels), so that a DP release's filters may name it as a
    suppressed release's do."""
    fields = field_specs(ds)
    out: dict[str, CompiledFilter] = {}
    for d in ds.derived:
        if d.when is not None:
            flag = compile_filter(d.when, fields)
            out[d.name] = CompiledFilter(flag.expression, flag.fields)
            continue
        chain: Any = None
        used: frozenset[str] = frozenset()
        for label, condition in d.categories:
            compiled = compile_filter(condition, fields)
            used |= compiled.fields
            chain = (pl.when if chain is None else chain.when)(compiled.expression).then(
                pl.lit(label)
            )
        otherwise = pl.lit(d.otherwise, dtype=pl.String)
        out[d.name] = CompiledFilter(
            otherwise if chain is None else chain.otherwise(otherwise), used
        )
    return out


def _dp_population(job: _Computation) -> tuple[pl.DataFrame, str, pl.Expr]:
    """(the records counted, the person field, the numerator condition) of a DP release.

    Read one submission at a time, and only what the release needs: the person (kept as a
    64-bit hash, which the DP engine hashes again), the dimensions (as enumerations of their
    declared values) and whether each record is in the numerator, for the records of the
    population. Memory grows by about a dozen bytes a record, not by the records' text."""
    session, master, policy, definition = job.session, job.master, job.policy, job.definition
    base, cohort, now = job.base, job.cohort, job.ctx.now
    ds = dataset_terms(policy, definition.dataset, now)
    person = identifier_field(ds)
    derived = _derived_columns(ds)
    fields = [
        *field_specs(ds),
        *(
            (
                d.name,
                FieldType.BOOLEAN if d.when is not None else FieldType.STRING,
                FieldRole.DIMENSION,
            )
            for d in ds.derived
        ),
    ]
    population_filter = compile_filter(
        definition.denominator.filter if definition.denominator else None, fields
    )
    numerator_filter = compile_filter(definition.numerator.filter, fields)
    named = population_filter.fields | numerator_filter.fields
    computed = [name for name in derived if name in named]
    columns = sorted(
        {person, *job.dims}
        | (named - set(computed))
        | {f for name in computed for f in derived[name].fields}
    )
    population = population_filter.expression
    numerator = numerator_filter.expression
    if definition.cohort is not None:
        cohort_ds = dataset_terms(policy, definition.cohort.dataset, now)
        cohort_person = identifier_field(cohort_ds)
        cohort_filter = compile_filter(definition.cohort.filter, field_specs(cohort_ds))
        cohort_frame = load_frame(
            session, master, cohort, sorted({cohort_person} | cohort_filter.fields)
        )
        if cohort_frame is None:
            population = pl.lit(False)  # no one is in an empty cohort
        else:
            members = (
                cohort_frame.filter(cohort_filter.expression).get_column(cohort_person).unique()
            )
            population = population & pl.col(person).is_in(members.implode())
    enums = {
        d: pl.Enum([str(v) for v in (ds.field(d).enum or ())])  # type: ignore[union-attr]
        for d in job.dims
    }
    parts: list[pl.DataFrame] = []
    for submission in base:
        frame = load_frame(session, master, [submission], columns)
        if frame is None:
            continue
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            frame = frame.with_columns(pl.lit(None).alias(c) for c in missing)
        if computed:
            frame = frame.with_columns(derived[name].expression.alias(name) for name in computed)
        parts.append(
            frame.filter(population).select(
                pl.col(person).hash(seed=_DP_PERSON_SEED).alias(person),
                *(pl.col(d).cast(pl.String).cast(enums[d], strict=False) for d in job.dims),
                numerator.cast(pl.Boolean).fill_null(False).alias(_IN_NUMERATOR),
            )
        )
        del frame
    if parts:
        out = pl.concat(parts, how="vertical")
    else:
        out = pl.DataFrame(
            [pl.Series(person, [], dtype=pl.UInt64)]
            + [pl.Series(d, [], dtype=enums[d]) for d in job.dims]
            + [pl.Series(_IN_NUMERATOR, [], dtype=pl.Boolean)]
        )
    return out, person, pl.col(_IN_NUMERATOR)


def _dp_release(job: _Computation) -> Release | tuple[list[dict[str, Any]], dict[str, Any]]:
    """Plan, charge the ledger, then compute. The charge is in this transaction: a failure rolls
    it back (the refund), a stored release commits with it."""
    session, ctx, policy, decision = job.session, job.ctx, job.policy, job.decision
    definition, dims = job.definition, job.dims
    from disclosure import dp

    plan, charges = _dp_plan(policy, decision, definition, dims, ctx.now)
    population, person, numerator = _dp_population(job)
    # Every input is read: the charge, the noise and the storing are one new transaction.
    end_reads(session)
    job.progress(COMPUTING, 0.4)
    with session.begin_nested() as charged:
        charge(session, ctx, charges, job.release_id)
        # The budgets are now locked: a concurrent identical request that got here first has
        # committed its release; return it and refund this charge.
        existing = session.scalars(
            select(Release).where(
                Release.indicator_id == definition.id, Release.request_key == job.key
            )
        ).first()
        if existing is not None:
            charged.rollback()
            return existing
    result = dp.release(population, plan, person=person, numerator=numerator)
    return result.cells, {**result.parameters, "epsilon": plan.epsilon}
