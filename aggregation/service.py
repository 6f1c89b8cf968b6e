"""Indicator definitions and releases.

A definition is checked against every contributing agreement when it is made. A release computes
the table with all margins from the decrypted records of the submissions in force, applies the
strictest disclosure obligations, and is stored immutably: asking for the same release again
returns the stored one.
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

from aggregation import suppression
from aggregation.cube import Cube, build_cube
from aggregation.definition import IndicatorDefinition
from aggregation.expressions import compile_filter
from aggregation.models import Indicator, IndicatorVersion, Release
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import InvalidInput, NotFound, PolicyDenied
from core.ids import new_id
from core.keys import MasterKey
from policy.engine import PolicySet, decide
from policy.model import Context, DatasetTerms, Decision, Principal, Resource
from policy.vocabulary import GEOGRAPHY_RANK
from records.service import in_scope, load_frame

CODE_VERSION = "backbone-aggregation/1"
_EMPTY_TYPES: dict[str, Any] = {
    "string": pl.String,
    "integer": pl.Int64,
    "number": pl.Float64,
    "boolean": pl.Boolean,
    "date": pl.Date,
    "year": pl.Int32,
}


class IndicatorInvalid(InvalidInput):
    kind = "invalid-indicator"
    title = "The indicator definition is invalid"


@dataclass(frozen=True)
class ReleaseRequest:
    dimensions: tuple[str, ...] | None = None
    method: str | None = None


def _dataset_terms(policy: PolicySet, dataset: str, now: Any) -> DatasetTerms:
    for terms in policy.covering(dataset):
        if terms.in_force(now):
            ds = terms.dataset(dataset)
            if ds is not None:
                return ds
    raise IndicatorInvalid(f"No agreement in force defines dataset {dataset}.")


def _person_field(ds: DatasetTerms) -> str:
    for f in ds.fields:
        if f.role == "identifier":
            return f.name
    raise IndicatorInvalid(f"Dataset {ds.name} has no identifier field to count people by.")


def _fields(ds: DatasetTerms) -> list[tuple[str, str, str]]:
    return [(f.name, f.type, f.role) for f in ds.fields]


def _finest_geography(ds: DatasetTerms, dims: Sequence[str]) -> str | None:
    levels = [f.geography for f in ds.fields if f.name in dims and f.geography]
    return min(levels, key=lambda g: GEOGRAPHY_RANK.get(g, -1)) if levels else None


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
            dimensions=frozenset(dims),
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


def _check_definition(policy: PolicySet, definition: IndicatorDefinition, now: Any) -> None:
    ds = _dataset_terms(policy, definition.dataset, now)
    _person_field(ds)
    fields = _fields(ds)
    compile_filter(definition.numerator.filter, fields)
    if definition.denominator is not None:
        compile_filter(definition.denominator.filter, fields)
    for dim in definition.dimensions:
        spec = ds.field(dim)
        if spec is None or spec.role != "dimension":
            raise IndicatorInvalid(f"{dim} is not a dimension field of dataset {ds.name}.")
        if not spec.enum:
            raise IndicatorInvalid(
                f"Dimension {dim} has no declared values in the agreement; published categories"
                " must come from the agreement, never from the data."
            )
    if definition.value_field is not None:
        spec = ds.field(definition.value_field)
        if spec is None or spec.type not in ("integer", "number"):
            raise IndicatorInvalid(f"{definition.value_field} is not a numeric field of {ds.name}.")
    if definition.cohort is not None:
        cohort = _dataset_terms(policy, definition.cohort.dataset, now)
        _person_field(cohort)
        compile_filter(definition.cohort.filter, _fields(cohort))


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
            action="indicator.define",
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


def _value(unit: str, num: int, den: int | None) -> float | None:
    if unit == "count":
        return float(num)
    if not den:
        return None
    if unit == "percent":
        return round(100.0 * num / den, 1)
    if unit == "rate_per_1000":
        return round(1000.0 * num / den, 1)
    return None


def _cells(cube: Cube, status: Any, unit: str) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = []
    for index in cube.coordinates():
        labels = cube.labels(index)
        st = str(status[index])
        num = int(cube.numerator[index])
        den = int(cube.denominator[index]) if cube.denominator is not None else None
        published = st == suppression.FREE
        cell: dict[str, Any] = dict(zip(cube.dimensions, labels, strict=True))
        cell.update(
            {
                "numerator": num if published else None,
                "denominator": den if published else None,
                "value": _value(unit, num, den) if published else None,
                "status": st,
            }
        )
        cells.append(cell)
    return cells


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
        raise IndicatorInvalid("A requested dimension is not one of the indicator's dimensions.")
    method = request.method or definition.method
    if method != "suppression":
        raise IndicatorInvalid("This release method is not available yet; use suppression.")
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
                action="release.create",
                resource_type="release",
                resource_id=existing.id,
                decision=decision,
                detail="returned the stored release",
            ),
        )
        return existing, False

    ds = _dataset_terms(policy, definition.dataset, ctx.now)
    person = _person_field(ds)
    fields = _fields(ds)
    frame = load_frame(session, master, base)
    if frame is None:
        frame = pl.DataFrame({f.name: pl.Series([], dtype=_EMPTY_TYPES[f.type]) for f in ds.fields})
    population = frame.filter(
        compile_filter(
            definition.denominator.filter if definition.denominator else None, fields
        ).expression
    )
    if definition.cohort is not None:
        cohort_ds = _dataset_terms(policy, definition.cohort.dataset, ctx.now)
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
    numerator = population.filter(compile_filter(definition.numerator.filter, fields).expression)
    categories = tuple(tuple(str(v) for v in (ds.field(d).enum or ())) for d in dims)  # type: ignore[union-attr]
    cube = build_cube(
        numerator,
        population if definition.denominator is not None else None,
        person,
        dims,
        categories,
    )
    k = decision.obligations.min_cell_size or 11
    status = suppression.statuses(cube, k)
    cells = _cells(cube, status, definition.unit)
    release = Release(
        id=new_id("rel"),
        indicator_id=indicator_id,
        indicator_version=version.version,
        request_key=key,
        method=method,
        dimensions=list(dims),
        parameters={"min_cell_size": k, "rounding": decision.obligations.rounding or "none"},
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
    )
    session.add(release)
    session.flush()
    suppressed = sum(
        1 for c in cells if c["status"] in (suppression.PRIMARY, suppression.SECONDARY)
    )
    event = record(
        session,
        ctx,
        AuditRecord(
            action="release.create",
            resource_type="release",
            resource_id=release.id,
            decision=decision,
            purpose=definition.purpose,
            counts={"cells": len(cells), "suppressed": suppressed, "submissions": len(used)},
        ),
    )
    release.audit_index = event.idx
    session.flush()
    return release, True


def read_release(
    session: Session, ctx: RequestContext, policy: PolicySet, release_id: str
) -> tuple[Release, Decision]:
    """Return a stored release if the caller's organization is a recipient under every
    contributing agreement in force."""
    assert ctx.principal is not None
    release = session.get(Release, release_id)
    if release is None:
        raise NotFound("No such release.")
    _version, definition = get_definition(session, release.indicator_id)
    decision = decide(
        ctx.principal,
        "read",
        Resource(datasets=definition.datasets),
        Context(),
        policy,
        ctx.now,
    )
    if ctx.principal.organization_id not in release.recipients or not decision.permitted:
        if decision.permitted:
            raise PolicyDenied("Denied: your organization is not a recipient of this indicator.")
        raise PolicyDenied(decision.explanation, decision=decision)
    record(
        session,
        ctx,
        AuditRecord(
            action="release.read",
            resource_type="release",
            resource_id=release.id,
            decision=decision,
        ),
    )
    return release, decision


def list_releases(session: Session, indicator_id: str) -> Sequence[Release]:
    return session.scalars(
        select(Release)
        .where(Release.indicator_id == indicator_id)
        .order_by(Release.created_at.desc())
    ).all()
