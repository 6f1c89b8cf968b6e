"""Indicator definitions and releases.

A definition is checked against every contributing agreement when it is made. A release computes
the table with all margins from the decrypted records of the submissions in force, applies the
strictest disclosure obligations, and is stored immutably: asking for the same release again
returns the stored one.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregation import suppression
from aggregation.cube import TOTAL
from aggregation.definition import IndicatorDefinition
from aggregation.joint import Obligations, Shape, release_shape
from aggregation.ledger import Charge, charge, period_of
from aggregation.models import Indicator, IndicatorVersion, Release
from aggregation.population import Sources, protect_release
from aggregation.vocabulary import Unit
from agreements.expressions import compile_filter, tokens
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import InvalidInput, NotFound, PolicyDenied
from core.ids import new_id
from core.keys import MasterKey
from policy.engine import PolicySet, decide
from policy.model import Context, DatasetTerms, Decision, Principal, Resource
from policy.vocabulary import GEOGRAPHY_RANK, DisclosureMethod, FieldRole, FieldType, RoundingScheme
from records.models import Submission
from records.service import in_scope, load_frame
from records.validate import POLARS_TYPES

CODE_VERSION = "backbone-aggregation/2"


class IndicatorInvalid(InvalidInput):
    kind = "invalid-indicator"
    title = "The indicator definition is invalid"


@dataclass(frozen=True)
class ReleaseRequest:
    dimensions: tuple[str, ...] | None = None
    method: str | None = None


# What may be echoed of a name the caller sent.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def _dataset_terms(policy: PolicySet, dataset: str, now: Any) -> DatasetTerms:
    for terms in policy.covering(dataset):
        if terms.in_force(now):
            ds = terms.dataset(dataset)
            if ds is not None:
                return ds
    raise IndicatorInvalid(f"No agreement in force defines dataset {dataset}.")


def _person_field(ds: DatasetTerms) -> str:
    for f in ds.fields:
        if f.role == FieldRole.IDENTIFIER:
            return f.name
    raise IndicatorInvalid(f"Dataset {ds.name} has no identifier field to count people by.")


def _fields(ds: DatasetTerms) -> list[tuple[str, str, str]]:
    return [(f.name, f.type, f.role) for f in ds.fields]


def _finest_geography(ds: DatasetTerms, dims: Sequence[str]) -> str | None:
    levels = [f.geography for f in ds.fields if f.name in dims and f.geography]
    return min(levels, key=lambda g: GEOGRAPHY_RANK.get(g, -1)) if levels else None


def published_attributes(
    definition: IndicatorDefinition, dims: Sequence[str], method: str
) -> frozenset[str]:
    """What a release breaks its population down by, for the agreements' dimension terms: its
    dimensions and, for a suppressed release, the categories its population is restricted to
    (a denominator's filter, or a count's), since a slice is a cell of that breakdown published
    exactly. The outcome a rate counts (its numerator's own condition) is the indicator's
    measure, not a breakdown, and a cohort is checked as a linked dataset. A differentially
    private release's filters are queries whose privacy loss the ledger charges: only its
    dimensions are a breakdown."""
    if method == DisclosureMethod.DIFFERENTIAL_PRIVACY:
        return frozenset(dims)
    population = definition.denominator if definition.unit != Unit.COUNT else definition.numerator
    restricted = _condition_fields(population.filter if population else None)
    return frozenset(dims) | restricted


def _condition_fields(text: str | None) -> frozenset[str]:
    """The names a filter mentions (its attributes), without compiling it."""
    if not text:
        return frozenset()
    try:
        return frozenset(t.value for t in tokens(text) if t.kind == "name")
    except InvalidInput:
        return frozenset()


def publish_decision(
    principal: Principal,
    policy: PolicySet,
    definition: IndicatorDefinition,
    dims: Sequence[str],
    method: str,
    now: datetime,
) -> Decision:
    """The policy decision on publishing ``definition`` along ``dims`` with ``method``."""
    ds = next(
        (
            t.dataset(definition.dataset)
            for t in policy.covering(definition.dataset)
            if t.in_force(now)
        ),
        None,
    )
    cohort = frozenset({definition.cohort.dataset}) if definition.cohort else frozenset()
    return decide(
        principal,
        "publish",
        Resource(
            datasets=definition.datasets,
            dimensions=published_attributes(definition, dims, method),
            geography=_finest_geography(ds, dims) if ds is not None else None,
            method=method,
            linked_datasets=frozenset(definition.datasets) if definition.cohort else frozenset(),
            cohort_datasets=cohort,
        ),
        Context(purpose=definition.purpose, recipients=frozenset(definition.recipients)),
        policy,
        now,
    )


def _publish_decision(
    ctx: RequestContext,
    policy: PolicySet,
    definition: IndicatorDefinition,
    dims: Sequence[str],
    method: str,
) -> Decision:
    assert ctx.principal is not None
    return publish_decision(ctx.principal, policy, definition, dims, method, ctx.now)


def _shape(
    policy: PolicySet, definition: IndicatorDefinition, dims: Sequence[str], now: datetime
) -> Shape:
    """Where a suppressed release of ``definition`` along ``dims`` sits in its population's
    partition (raises when a filter is not a slice of the declared categories)."""
    ds = _dataset_terms(policy, definition.dataset, now)
    cohort = None
    if definition.cohort is not None:
        cohort = (
            _dataset_terms(policy, definition.cohort.dataset, now),
            definition.cohort.filter,
        )
    return release_shape(
        ds,
        dims,
        definition.numerator.filter,
        definition.denominator.filter if definition.denominator else None,
        definition.denominator is not None,
        cohort,
    )


def _check_definition(policy: PolicySet, definition: IndicatorDefinition, now: Any) -> None:
    ds = _dataset_terms(policy, definition.dataset, now)
    _person_field(ds)
    fields = _fields(ds)
    if definition.cohort is not None:
        cohort = _dataset_terms(policy, definition.cohort.dataset, now)
        _person_field(cohort)
        compile_filter(definition.cohort.filter, _fields(cohort))
    if definition.method == DisclosureMethod.SUPPRESSION:
        if definition.unit == Unit.MEAN:
            raise IndicatorInvalid("Means are released by differential privacy only.")
        _shape(policy, definition, definition.dimensions, now)
        return
    compile_filter(definition.numerator.filter, fields)
    if definition.denominator is not None:
        compile_filter(definition.denominator.filter, fields)
    for dim in definition.dimensions:
        spec = ds.field(dim)
        if spec is None or spec.role != FieldRole.DIMENSION:
            raise IndicatorInvalid(f"{dim} is not a dimension field of dataset {ds.name}.")
        if not spec.enum:
            raise IndicatorInvalid(
                f"Dimension {dim} has no declared values in the agreement; published categories"
                " must come from the agreement, never from the data."
            )
    if definition.value_field is not None:
        spec = ds.field(definition.value_field)
        if spec is None or spec.type not in (FieldType.INTEGER, FieldType.NUMBER):
            raise IndicatorInvalid(f"{definition.value_field} is not a numeric field of {ds.name}.")


def define(
    session: Session, ctx: RequestContext, policy: PolicySet, definition: IndicatorDefinition
) -> IndicatorVersion:
    """Create an indicator, or a new version of it, after checking it against the agreements."""
    assert ctx.principal is not None
    _check_definition(policy, definition, ctx.now)
    decision = _publish_decision(ctx, policy, definition, definition.dimensions, definition.method)
    if not decision.permitted:
        raise PolicyDenied(decision.explanation, decision=decision)
    indicator = session.get(Indicator, definition.id)
    if indicator is None:
        indicator = Indicator(
            id=definition.id,
            title=definition.title,
            latest_version=0,
            created_by=ctx.principal.organization_id,
            created_at=ctx.now,
        )
        session.add(indicator)
    else:
        current = session.get(IndicatorVersion, (indicator.id, indicator.latest_version))
        if current is not None and current.content_hash == definition.content_hash():
            return current
    indicator.title = definition.title
    indicator.latest_version += 1
    row = IndicatorVersion(
        indicator_id=indicator.id,
        version=indicator.latest_version,
        definition=definition.model_dump(mode="json", exclude_none=True),
        content_hash=definition.content_hash(),
        created_at=ctx.now,
        created_by_client=ctx.principal.client_id,
    )
    session.add(row)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.INDICATOR_DEFINE,
            resource_type="indicator",
            resource_id=f"{indicator.id}/v{row.version}",
            decision=decision,
            purpose=definition.purpose,
        ),
    )
    return row


def get_definition(
    session: Session, indicator_id: str
) -> tuple[IndicatorVersion, IndicatorDefinition]:
    indicator = session.get(Indicator, indicator_id)
    if indicator is None:
        raise NotFound("No such indicator.")
    row = session.get(IndicatorVersion, (indicator_id, indicator.latest_version))
    assert row is not None
    return row, IndicatorDefinition.model_validate(row.definition)


def list_definitions(session: Session) -> Sequence[tuple[IndicatorVersion, IndicatorDefinition]]:
    rows = session.execute(
        select(IndicatorVersion)
        .join(
            Indicator,
            (Indicator.id == IndicatorVersion.indicator_id)
            & (Indicator.latest_version == IndicatorVersion.version),
        )
        .order_by(IndicatorVersion.indicator_id)
    ).scalars()
    return [(r, IndicatorDefinition.model_validate(r.definition)) for r in rows]


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


def create_release(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    policy: PolicySet,
    indicator_id: str,
    request: ReleaseRequest,
) -> tuple[Release, bool]:
    """Compute and store a release, or return the stored one for the same request."""
    assert ctx.principal is not None
    version, definition = get_definition(session, indicator_id)
    dims = (
        tuple(request.dimensions)
        if request.dimensions is not None
        else tuple(definition.dimensions)
    )
    unknown = [d for d in dims if d not in definition.dimensions]
    if unknown:
        names = ", ".join(f"'{d}'" if _NAME.match(d) else "(unprintable)" for d in unknown[:10])
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
        shape = _shape(policy, definition, dims, ctx.now)
    decision = _publish_decision(ctx, policy, definition, dims, method)
    if not decision.permitted:
        raise PolicyDenied(decision.explanation, decision=decision)
    agreement_ids = frozenset(a for a, _ in decision.agreements)
    base = in_scope(session, definition.dataset, agreement_ids)
    cohort = (
        in_scope(session, definition.cohort.dataset, agreement_ids) if definition.cohort else []
    )
    used = [s.id for s in base] + [s.id for s in cohort]
    key = _request_key(version, dims, method, used)
    existing = session.scalars(
        select(Release).where(Release.indicator_id == indicator_id, Release.request_key == key)
    ).first()
    if existing is not None:
        record(
            session,
            ctx,
            AuditRecord(
                action=AuditAction.RELEASE_CREATE,
                resource_type="release",
                resource_id=existing.id,
                decision=decision,
                detail="returned the stored release",
            ),
        )
        return existing, False

    release_id = new_id("rel")
    audit: dict[str, int | float] = {}
    population: str | None = None
    publication: dict[str, Any] | None = None
    sealed: bytes | None = None
    if method == DisclosureMethod.DIFFERENTIAL_PRIVACY:
        outcome = _dp_release(
            session, ctx, master, policy, decision, definition, dims, base, cohort, release_id, key
        )
        if isinstance(outcome, Release):
            return outcome, False
        cells, parameters = outcome
    else:
        assert shape is not None
        ob = decision.obligations
        if ob.min_cell_size is None:
            # Fail closed: a publication without a threshold is not a suppressed release.
            raise IndicatorInvalid(
                "A contributing agreement states no minimum cell size; nothing is suppressed "
                "and published without one."
            )
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
            return in_scope(session, dataset, ids)

        result = protect_release(
            session,
            master,
            Sources(lambda name: _dataset_terms(policy, name, now), scope),
            shape,
            Obligations(
                k=ob.min_cell_size,
                rounding=ob.rounding or RoundingScheme.NONE,
                top_code_percent=ob.top_code_percent,
                bottom_code_percent=ob.bottom_code_percent,
            ),
            definition.unit,
            release_id,
        )
        cells = result.protection.cells()
        parameters = result.protection.parameters()
        audit = _audit_counts(result.audit)
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
    return release, True


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
            charges.extend(Charge(agreement_id, name, period, epsilon, limit) for period in periods)
    return charges


def _dp_population(
    session: Session,
    master: MasterKey,
    policy: PolicySet,
    definition: IndicatorDefinition,
    base: Sequence[Submission],
    cohort: Sequence[Submission],
    now: datetime,
) -> tuple[pl.DataFrame, str, pl.Expr]:
    """(the records counted, the person field, the numerator condition) of a DP release."""
    ds = _dataset_terms(policy, definition.dataset, now)
    person = _person_field(ds)
    fields = _fields(ds)
    frame = load_frame(session, master, base)
    if frame is None:
        frame = pl.DataFrame({f.name: pl.Series([], dtype=POLARS_TYPES[f.type]) for f in ds.fields})
    population = frame.filter(
        compile_filter(
            definition.denominator.filter if definition.denominator else None, fields
        ).expression
    )
    if definition.cohort is not None:
        cohort_ds = _dataset_terms(policy, definition.cohort.dataset, now)
        cohort_frame = load_frame(session, master, cohort)
        members: list[bytes] = []
        if cohort_frame is not None:
            members = (
                cohort_frame.filter(
                    compile_filter(definition.cohort.filter, _fields(cohort_ds)).expression
                )
                .get_column(_person_field(cohort_ds))
                .unique()
                .to_list()
            )
        population = population.filter(pl.col(person).is_in(members))
    return population, person, compile_filter(definition.numerator.filter, fields).expression


def _dp_release(
    session: Session,
    ctx: RequestContext,
    master: MasterKey,
    policy: PolicySet,
    decision: Decision,
    definition: IndicatorDefinition,
    dims: tuple[str, ...],
    base: Sequence[Submission],
    cohort: Sequence[Submission],
    release_id: str,
    key: str,
) -> Release | tuple[list[dict[str, Any]], dict[str, Any]]:
    """Plan, charge the ledger, then compute. The charge is in this transaction: a failure rolls
    it back (the refund), a stored release commits with it."""
    # OpenDP's prelude imports its scikit-learn extras (seconds at every start): only here.
    from aggregation import dp

    epsilon = decision.obligations.epsilon_per_release
    if epsilon is None:
        raise IndicatorInvalid("The contributing agreements set no privacy loss per release.")
    ds = _dataset_terms(policy, definition.dataset, ctx.now)
    categories = tuple(tuple(str(v) for v in (ds.field(d).enum or ())) for d in dims)  # type: ignore[union-attr]
    plan = dp.plan(
        dims, categories, definition.unit, epsilon, decision.obligations.max_contributions or 1
    )
    population, person, numerator = _dp_population(
        session, master, policy, definition, base, cohort, ctx.now
    )
    with session.begin_nested() as charged:
        charge(
            session,
            ctx,
            _dp_charges(policy, decision, definition, plan.epsilon, ctx.now),
            release_id,
        )
        # The budgets are now locked: a concurrent identical request that got here first has
        # committed its release; return it and refund this charge.
        existing = session.scalars(
            select(Release).where(Release.indicator_id == definition.id, Release.request_key == key)
        ).first()
        if existing is not None:
            charged.rollback()
            return existing
    result = dp.release(population, plan, person=person, numerator=numerator)
    return result.cells, {**result.parameters, "epsilon": plan.epsilon}


@dataclass(frozen=True)
class ReleaseView:
    """A stored release with the definition it was computed from. Releases never change, so
    views are cached by id (the authorization check and the audit event are not)."""

    id: str
    indicator_id: str
    indicator_version: int
    unit: str
    purpose: str
    datasets: tuple[str, ...]
    dimensions: tuple[str, ...]
    method: str
    parameters: dict[str, Any]
    cells: tuple[dict[str, Any], ...]
    provenance: dict[str, Any]
    recipients: frozenset[str]
    created_at: datetime
    audit_index: int | None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "indicator": self.indicator_id,
            "indicator_version": self.indicator_version,
            "unit": self.unit,
            "method": self.method,
            "dimensions": list(self.dimensions),
            "parameters": self.parameters,
            "created_at": self.created_at.isoformat(),
            "audit_index": self.audit_index,
        }


_views: OrderedDict[str, ReleaseView] = OrderedDict()
_views_lock = threading.Lock()
_VIEWS_MAX = 256


def cached_view(release_id: str) -> ReleaseView | None:
    """The view of a release this process has loaded before (releases never change)."""
    with _views_lock:
        return _views.get(release_id)


def release_view(session: Session, release_id: str) -> ReleaseView:
    with _views_lock:
        view = _views.get(release_id)
        if view is not None:
            _views.move_to_end(release_id)
            return view
    release = session.get(Release, release_id)
    if release is None:
        raise NotFound("No such release.")
    row = session.get(IndicatorVersion, (release.indicator_id, release.indicator_version))
    assert row is not None
    definition = IndicatorDefinition.model_validate(row.definition)
    view = ReleaseView(
        id=release.id,
        indicator_id=release.indicator_id,
        indicator_version=release.indicator_version,
        unit=definition.unit,
        purpose=definition.purpose,
        datasets=definition.datasets,
        dimensions=tuple(release.dimensions),
        method=release.method,
        parameters=dict(release.parameters),
        cells=tuple(release.cells),
        provenance=dict(release.provenance),
        recipients=frozenset(release.recipients),
        created_at=release.created_at,
        audit_index=release.audit_index,
    )
    with _views_lock:
        _views[release_id] = view
        while len(_views) > _VIEWS_MAX:
            _views.popitem(last=False)
    return view


def authorize_read(ctx: RequestContext, policy: PolicySet, view: ReleaseView) -> Decision:
    """The caller's organization must be a recipient of the release and, under every
    contributing agreement in force, a permitted reader."""
    assert ctx.principal is not None
    decision = decide(
        ctx.principal, "read", Resource(datasets=view.datasets), Context(), policy, ctx.now
    )
    if not decision.permitted:
        raise PolicyDenied(decision.explanation, decision=decision)
    if ctx.principal.organization_id not in view.recipients:
        raise PolicyDenied(
            "Denied: your organization is not among the recipients this indicator was published to."
        )
    return decision


def read_record(view: ReleaseView, decision: Decision) -> AuditRecord:
    """The audit event of a permitted read of ``view``."""
    return AuditRecord(
        action=AuditAction.RELEASE_READ,
        resource_type="release",
        resource_id=view.id,
        decision=decision,
    )


def read_release(
    session: Session, ctx: RequestContext, policy: PolicySet, release_id: str
) -> tuple[ReleaseView, Decision]:
    """Return a stored release to a permitted reader, and audit the read."""
    view = release_view(session, release_id)
    decision = authorize_read(ctx, policy, view)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_READ,
            resource_type="release",
            resource_id=view.id,
            decision=decision,
        ),
    )
    return view, decision


def list_releases(session: Session, indicator_id: str) -> Sequence[Release]:
    return session.scalars(
        select(Release)
        .where(Release.indicator_id == indicator_id)
        .order_by(Release.created_at.desc())
    ).all()


def series(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    indicator_id: str,
    filters: dict[str, frozenset[str]],
) -> dict[str, Any]:
    """The indicator over time: for each period, the value of the most recent release that
    has it, at the totals of every dimension not filtered on; with baseline and target."""
    version, definition = get_definition(session, indicator_id)
    period = definition.period_dimension
    if period is None:
        raise IndicatorInvalid("This indicator has no period dimension, so it has no time series.")
    unknown = set(filters) - set(definition.dimensions)
    if unknown or period in filters:
        raise IndicatorInvalid("Filter on the indicator's non-period dimensions only.")
    if any(len(v) != 1 for v in filters.values()):
        raise IndicatorInvalid("A series takes one value per filtered dimension.")
    points: dict[str, dict[str, Any]] = {}
    used: list[str] = []
    decision: Decision | None = None
    for release in list_releases(session, indicator_id):
        if period not in release.dimensions or not set(filters) <= set(release.dimensions):
            continue
        view = release_view(session, release.id)
        decision = authorize_read(ctx, policy, view)
        contributed = False
        for cell in view.cells:
            label = cell.get(period)
            if label == TOTAL or label in points:
                continue
            if all(
                (str(cell.get(d)) in filters[d]) if d in filters else cell.get(d) == TOTAL
                for d in view.dimensions
                if d != period
            ):
                points[str(label)] = {
                    "period": label,
                    **{d: cell.get(d) for d in filters},
                    **{
                        k: cell.get(k)
                        for k in ("value", "lower", "upper", "status", "numerator", "denominator")
                    },
                    "release": view.id,
                }
                contributed = True
        if contributed:
            used.append(view.id)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RELEASE_READ,
            resource_type="indicator_series",
            resource_id=indicator_id,
            decision=decision,
            counts={"releases": len(used), "points": len(points)},
        ),
    )
    return {
        "indicator": indicator_id,
        "version": version.version,
        "title": definition.title,
        "unit": definition.unit,
        "direction": definition.direction,
        "period_dimension": period,
        "filters": {d: sorted(v) for d, v in filters.items()},
        "baseline": definition.baseline.model_dump() if definition.baseline else None,
        "target": definition.target.model_dump() if definition.target else None,
        "points": [points[p] for p in sorted(points)],
        "releases": used,
    }
