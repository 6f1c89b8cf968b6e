"""Indicator definitions: checked against every contributing agreement when they are made,
versioned, and the policy decision on publishing them.

The release of a definition is :mod:`aggregation.releases`; reading releases and series is
:mod:`aggregation.reads`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregation.definition import IndicatorDefinition
from aggregation.models import Indicator, IndicatorVersion
from agreements.expressions import compile_filter, tokens
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import InvalidInput, NotFound, PolicyDenied
from disclosure.joint import Shape, release_shape
from disclosure.vocabulary import Unit
from identity.models import Organization
from policy.engine import PolicySet, decide
from policy.explain import explanation
from policy.model import PUBLIC, Context, DatasetTerms, Decision, Principal, Resource
from policy.vocabulary import (
    GEOGRAPHY_RANK,
    PEER_LEARNING,
    DisclosureMethod,
    FieldRole,
    FieldType,
    OrganizationKind,
)


class IndicatorInvalid(InvalidInput):
    kind = "invalid-indicator"
    title = "The indicator definition is invalid"


# What may be echoed of a name the caller sent.
ECHOABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def dataset_terms(policy: PolicySet, dataset: str, now: Any) -> DatasetTerms:
    """The terms of ``dataset`` under the first agreement in force that defines it."""
    for terms in policy.covering(dataset):
        if terms.in_force(now):
            ds = terms.dataset(dataset)
            if ds is not None:
                return ds
    raise IndicatorInvalid(f"No agreement in force defines dataset {dataset}.")


def identifier_field(ds: DatasetTerms) -> str:
    """The identifier field by which ``ds`` counts people."""
    for f in ds.fields:
        if f.role == FieldRole.IDENTIFIER:
            return f.name
    raise IndicatorInvalid(f"Dataset {ds.name} has no identifier field to count people by.")


def field_specs(ds: DatasetTerms) -> list[tuple[str, str, str]]:
    """(name, type, role) of every field of ``ds``, as filters are compiled against."""
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


def suppressed_shape(
    policy: PolicySet, definition: IndicatorDefinition, dims: Sequence[str], now: datetime
) -> Shape:
    """Where a suppressed release of ``definition`` along ``dims`` sits in its population's
    partition (raises when a filter is not a slice of the declared categories)."""
    ds = dataset_terms(policy, definition.dataset, now)
    cohort = None
    if definition.cohort is not None:
        cohort = (
            dataset_terms(policy, definition.cohort.dataset, now),
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
    ds = dataset_terms(policy, definition.dataset, now)
    identifier_field(ds)
    fields = field_specs(ds)
    if definition.cohort is not None:
        cohort = dataset_terms(policy, definition.cohort.dataset, now)
        identifier_field(cohort)
        compile_filter(definition.cohort.filter, field_specs(cohort))
    if definition.method == DisclosureMethod.SUPPRESSION:
        if definition.unit == Unit.MEAN:
            raise IndicatorInvalid("Means are released by differential privacy only.")
        suppressed_shape(policy, definition, definition.dimensions, now)
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


def check_performance(
    session: Session, policy: PolicySet, definition: IndicatorDefinition, now: datetime
) -> None:
    """Check a performance measure against the organizations and the agreements in force
    (raises :class:`IndicatorInvalid`; a definition without a ``performance`` block passes).

    A measure is computed from its program's own records: its dataset or its cohort dataset
    is provided by the organization that runs the program, which is always among its
    recipients. Shown to anyone else than that organization, the backbone and the providers
    of the records it counts (whose own data it is), it is shown to the program's peers: its
    purpose must then be ``bb:PeerLearning``, which every contributing agreement must permit
    for those recipients (the policy decision on publishing it checks that)."""
    performance = definition.performance
    if performance is None:
        return
    if session.get(Organization, performance.organization) is None:
        raise IndicatorInvalid("The organization that runs the program is not known.")
    providers = {dataset_terms(policy, name, now).provider for name in definition.datasets}
    if performance.organization not in providers:
        raise IndicatorInvalid(
            "A performance measure is computed from the program's own records: its dataset or"
            " its cohort dataset must be provided by the organization that runs the program."
        )
    if performance.organization not in definition.recipients:
        raise IndicatorInvalid(
            "The organization that runs the program must be among the measure's recipients."
        )
    backbone = set(
        session.scalars(
            select(Organization.id).where(
                Organization.id.in_(definition.recipients),
                Organization.kind == OrganizationKind.BACKBONE,
            )
        )
    )
    peers = set(definition.recipients) - providers - backbone
    if peers and definition.purpose != PEER_LEARNING:
        raise IndicatorInvalid(
            f"A performance measure shown to peer organizations has purpose {PEER_LEARNING},"
            " which the agreements must permit for those recipients; otherwise its recipients"
            " are the program's organization and the backbone."
        )


def _checked(
    session: Session, ctx: RequestContext, policy: PolicySet, definition: IndicatorDefinition
) -> Decision:
    """The checks :func:`define` makes before it writes: the definition against the agreements
    in force (raises :class:`IndicatorInvalid`), then the policy decision on publishing it."""
    assert ctx.principal is not None
    _check_definition(policy, definition, ctx.now)
    check_performance(session, policy, definition, ctx.now)
    return publish_decision(
        ctx.principal, policy, definition, definition.dimensions, definition.method, ctx.now
    )


def check(
    session: Session, ctx: RequestContext, policy: PolicySet, definition: IndicatorDefinition
) -> Decision:
    """What :func:`define` would decide for ``definition``, without defining it: the same checks
    (refused the same way when the definition is invalid), then the policy decision, permitted
    or not, with its reasons. Writes nothing but its audit event (a policy decision)."""
    decision = _checked(session, ctx, policy, definition)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.POLICY_DECIDE,
            resource_type="indicator",
            resource_id=definition.id,
            decision=decision,
            purpose=definition.purpose,
            detail="checked an indicator definition without defining it",
        ),
    )
    return decision


def define(
    session: Session, ctx: RequestContext, policy: PolicySet, definition: IndicatorDefinition
) -> IndicatorVersion:
    """Create an indicator, or a new version of it, after checking it against the agreements
    (the checks of :func:`check`)."""
    assert ctx.principal is not None
    decision = _checked(session, ctx, policy, definition)
    if not decision.permitted:
        raise PolicyDenied(explanation(decision), decision=decision)
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


def visible_to(reader: Principal | None, definition: IndicatorDefinition) -> bool:
    """Whether ``reader`` may see ``definition``: every authenticated reader may (as before);
    the public only an indicator published to it. None: no reader to check (internal use)."""
    return reader is None or reader.organization_id != PUBLIC or PUBLIC in definition.recipients


def get_definition(
    session: Session, indicator_id: str, *, reader: Principal | None = None
) -> tuple[IndicatorVersion, IndicatorDefinition]:
    """The latest version of an indicator (raises :class:`NotFound`, also when ``reader`` may
    not see it: the public is told no more about an indicator not published to it)."""
    indicator = session.get(Indicator, indicator_id)
    if indicator is None:
        raise NotFound("No such indicator.")
    row = session.get(IndicatorVersion, (indicator_id, indicator.latest_version))
    assert row is not None
    definition = IndicatorDefinition.model_validate(row.definition)
    if not visible_to(reader, definition):
        raise NotFound("No such indicator.")
    return row, definition


def definition_at(session: Session, indicator_id: str, version: int) -> IndicatorDefinition:
    """One stored version of an indicator's definition (a release names the one it used)."""
    row = session.get(IndicatorVersion, (indicator_id, version))
    if row is None:
        raise NotFound("No such indicator version.")
    return IndicatorDefinition.model_validate(row.definition)


def list_definitions(
    session: Session, *, reader: Principal | None = None
) -> Sequence[tuple[IndicatorVersion, IndicatorDefinition]]:
    """The latest version of every indicator ``reader`` may see (see :func:`visible_to`), by id."""
    rows = session.execute(
        select(IndicatorVersion)
        .join(
            Indicator,
            (Indicator.id == IndicatorVersion.indicator_id)
            & (Indicator.latest_version == IndicatorVersion.version),
        )
        .order_by(IndicatorVersion.indicator_id)
    ).scalars()
    out = [(r, IndicatorDefinition.model_validate(r.definition)) for r in rows]
    return [(r, d) for r, d in out if visible_to(reader, d)]
