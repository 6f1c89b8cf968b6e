"""What the joint audit of a suppressed release needs from the database and the vault: the
records of its population and of its cohorts, labelled along every attribute, and the earlier
releases of the population with their true counts.

Earlier releases are rebuilt from their stored cells and from their true counts, sealed at
release time under the data keys of the records they counted (``sealed_counts``): destroying
those records' keys destroys the counts, and the release then leaves the model (it shares no
records with anything that can still be published). The audit itself is
:func:`disclosure.joint.protect_in_population`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregation.definitions import identifier_field
from aggregation.models import Release
from aggregation.progress import COMPUTING, PROTECTING, Progress
from aggregation.stored import published_table
from agreements.categories import FALSE, TRUE, codes, dataset_attributes, label
from core.db import end_reads
from core.keys import MasterKey
from disclosure.cube import person_hashes, person_ids_of
from disclosure.joint import (
    PERSON,
    SUBMISSION,
    CohortRef,
    Earlier,
    Limits,
    Obligations,
    Population,
    Shape,
    placeable,
    protect_in_population,
)
from disclosure.protection import Protection
from policy.model import DatasetTerms
from policy.vocabulary import DisclosureMethod
from records import vault
from records.models import Submission
from records.service import SUBMISSION_COLUMN, data_keys, load_frame

_COUNTS_LABEL = "release-counts"


def _no_progress(phase: str, fraction: float) -> None:
    return None


@dataclass(frozen=True)
class Sources:
    """How to reach a dataset's declared terms and its submissions in scope now."""

    terms: Callable[[str], DatasetTerms]
    scope: Callable[[str], Sequence[Submission]]


@dataclass(frozen=True)
class Outcome:
    """The protected release, where it sits, its sealed true counts and the audit's figures."""

    protection: Protection
    publication: dict[str, Any]
    sealed_counts: bytes
    proof: dict[str, Any]  # the suppression proof's figures, for the audit log


def _encode(x: np.ndarray, n: np.ndarray | None, limits: Limits) -> bytes:
    payload: dict[str, Any] = {"x": [int(v) for v in x.ravel()]}
    if n is not None:
        payload["n"] = [int(v) for v in n.ravel()]
    payload["limits"] = [[cell, q, lo, hi] for (cell, q), (lo, hi) in sorted(limits.items())]
    return json.dumps(payload, separators=(",", ":")).encode()


def _decode(raw: bytes) -> tuple[np.ndarray, np.ndarray | None, Limits]:
    data = json.loads(raw)
    n = data.get("n")
    limits = {(int(c), str(q)): (float(lo), float(hi)) for c, q, lo, hi in data.get("limits", [])}
    x = np.asarray(data["x"], dtype=np.int64)
    return x, None if n is None else np.asarray(n, dtype=np.int64), limits


def earlier_releases(
    session: Session, keys: vault.DataKeys, dataset: str
) -> tuple[list[Earlier], int]:
    """The suppressed releases of a population whose true counts can still be opened, oldest
    first, and how many could not (their records' keys were destroyed)."""
    out: list[Earlier] = []
    gone = 0
    rows = session.scalars(
        select(Release)
        .where(Release.population == dataset, Release.method == DisclosureMethod.SUPPRESSION.value)
        .order_by(Release.created_at, Release.id)
    ).all()
    for row in rows:
        if row.publication is None or row.sealed_counts is None:
            gone += 1
            continue
        try:
            x, n, limits = _decode(
                vault.open_under(keys, row.sealed_counts, f"{_COUNTS_LABEL}|{row.id}")
            )
        except vault.DataDestroyed:
            gone += 1
            continue
        shape = Shape.from_dict(row.publication["shape"])
        out.append(
            Earlier(
                shape=shape,
                scope=frozenset(row.publication["scope"]),
                published=published_table(
                    shape.dims,
                    shape.categories,
                    row.cells,
                    row.parameters,
                    rate=shape.denominator is not None,
                ),
                x=x,
                n=n,
                limits=limits,
            )
        )
    return out, gone


def _source_columns(ds: DatasetTerms, names: Iterable[str]) -> set[str]:
    """The stored columns the attributes ``names`` are computed from."""
    fields = {f.name for f in ds.fields}
    out: set[str] = set()
    for name in names:
        if name in fields:
            out.add(name)
        derived = ds.derived_field(name)
        if derived is not None:
            texts = [derived.when] if derived.when else [w for _, w in derived.categories]
            for text in texts:
                out |= fields & set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text or ""))
    return out


def _cohort_members(
    session: Session,
    master: MasterKey,
    terms: DatasetTerms,
    ref: CohortRef,
    scope: Sequence[Submission],
) -> pl.Series:
    """The linkage tokens of the people of a cohort dataset (within its slices)."""
    person = identifier_field(terms)
    attrs = dataset_attributes(terms)
    names = list(ref.slices)
    columns = sorted({person} | _source_columns(terms, names))
    frame = load_frame(session, master, scope, columns)
    if frame is None or frame.height == 0:
        return pl.Series([], dtype=pl.Binary)
    if names:
        objects = [attrs[name] for name in names]
        keep = np.ones(frame.height, dtype=bool)
        for name, column in zip(names, codes(frame, terms, objects), strict=True):
            keep &= column == attrs[name].categories.index(ref.slices[name])
        frame = frame.filter(pl.Series(keep))
    return frame.get_column(person).drop_nulls().unique()


def _population(
    session: Session,
    master: MasterKey,
    sources: Sources,
    ds: DatasetTerms,
    shapes: Sequence[Shape],
    scope: Sequence[Submission],
) -> Population:
    """The records of ``scope``, labelled along every attribute the ``shapes`` count by.

    Read one submission at a time and kept compact: each attribute as an enumeration of its
    categories (a small integer per record), the submission likewise, the person as a 64-bit
    id. The decrypted columns of one submission are all that is ever held as text, so memory
    grows with the records in scope by a few bytes each, not by their stored width."""
    declared: dict[str, tuple[str, ...]] = {
        name: attr.categories for name, attr in dataset_attributes(ds).items()
    }
    cohorts: dict[str, CohortRef] = {}
    for shape in shapes:
        cohorts.update(shape.cohorts)
    for name in cohorts:
        declared[name] = (TRUE, FALSE)
    wanted = sorted({a for shape in shapes for a in shape.attributes} & set(declared))
    person = identifier_field(ds)
    fields = [name for name in wanted if name not in cohorts]
    columns = sorted({person} | _source_columns(ds, fields))
    # Every label a release may count by: the declared categories and any an earlier release
    # published that the agreement no longer declares (the joint audit places those too).
    known: dict[str, list[str]] = {name: list(declared[name]) for name in wanted}
    for shape in shapes:
        for name, cats in zip(shape.dims, shape.categories, strict=True):
            if name in known:
                known[name].extend(c for c in cats if c not in known[name])
    enums = {name: pl.Enum(known[name]) for name in wanted}
    submissions = pl.Enum(sorted({s.id for s in scope}))
    members = {
        name: _cohort_members(
            session,
            master,
            sources.terms(cohorts[name].dataset),
            cohorts[name],
            sources.scope(cohorts[name].dataset),
        ).implode()
        for name in wanted
        if name in cohorts
    }
    parts: list[pl.DataFrame] = []
    for submission in scope:
        frame = load_frame(session, master, [submission], columns, with_submission=True)
        if frame is None:
            continue
        frame = frame.filter(pl.col(person).is_not_null())
        part = frame.select(
            pl.col(SUBMISSION_COLUMN).cast(submissions).alias(SUBMISSION),
            *(label(ds, name).cast(enums[name], strict=False).alias(name) for name in fields),
            *(
                pl.when(pl.col(person).is_in(members[name]))
                .then(pl.lit(TRUE))
                .otherwise(pl.lit(FALSE))
                .cast(enums[name])
                .alias(name)
                for name in members
            ),
            *(ids.alias(f"__id{i}") for i, ids in enumerate(person_hashes(pl.col(person)))),
        )
        del frame
        parts.append(part)
    if parts:
        labelled = pl.concat(parts, how="vertical")
    else:
        labelled = pl.DataFrame(
            {SUBMISSION: pl.Series([], dtype=submissions)}
            | {name: pl.Series([], dtype=enums[name]) for name in wanted}
            | {f"__id{i}": pl.Series([], dtype=pl.UInt64) for i in range(2)}
        )
    del parts
    ids = person_ids_of(labelled.get_column("__id0"), labelled.get_column("__id1"))
    labelled = labelled.drop("__id0", "__id1").with_columns(pl.Series(PERSON, ids))
    return Population(
        labelled,
        declared,
        ds.structural_zeros,
        period_field=ds.period_field,
        periods={s.id: s.period for s in scope if s.period is not None},
    )


def protect_release(
    session: Session,
    master: MasterKey,
    sources: Sources,
    shape: Shape,
    obligations: Obligations,
    unit: str,
    release_id: str,
    progress: Progress | None = None,
) -> Outcome:
    """Protect a suppressed release of ``shape`` over the submissions in scope jointly with
    everything published from the same records; seal its true counts for the next ones."""
    ds = sources.terms(shape.dataset)
    scope = sources.scope(shape.dataset)
    keys = vault.DataKeys(session, master)
    earlier, gone = earlier_releases(session, keys, shape.dataset)
    current = frozenset(s.id for s in scope)
    # Earlier releases that share records with this one (the others are independent of it).
    declared = set(dataset_attributes(ds)) | {
        name for e in [shape, *(x.shape for x in earlier)] for name in e.cohorts
    }
    linked = [
        e for e in earlier if e.scope & current and placeable(e.shape, dict.fromkeys(declared, ()))
    ]
    population = _population(
        session, master, sources, ds, [shape, *(e.shape for e in linked)], scope
    )
    cohort_scope = {
        ref.dataset: sorted(s.id for s in sources.scope(ref.dataset))
        for ref in shape.cohorts.values()
    }
    cohort_submissions = [s for ref in shape.cohorts.values() for s in sources.scope(ref.dataset)]
    sealing = data_keys(session, [*scope, *cohort_submissions])
    for key_id in sealing:
        keys.data_key(key_id)  # unsealed now, while the transaction is open
    # Every input is read: end the read-only transaction, so that the computation, which may
    # take long, holds no database connection (nor SQLite's write lock). A connection lost
    # meanwhile costs nothing: the caller stores the result in a new transaction.
    end_reads(session)
    report = progress or _no_progress
    report(COMPUTING, 0.3)
    joint = protect_in_population(
        population,
        shape,
        linked,
        obligations,
        unit,
        timer=time.perf_counter,
        counted=lambda: report(PROTECTING, 0.5),
    )
    sealed = vault.seal_under(
        keys,
        sealing,
        _encode(joint.x, joint.n, joint.protection.proof.limits()),
        f"{_COUNTS_LABEL}|{release_id}",
    )
    publication = {
        "shape": shape.as_dict(),
        "scope": sorted(current),
        "cohort_scope": cohort_scope,
    }
    summary = {
        **joint.summary,
        "unlinked_releases": len(earlier) - len(linked),
        "destroyed_releases": gone,
    }
    return Outcome(joint.protection, publication, sealed, summary)
