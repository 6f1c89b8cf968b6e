"""One joint audit per population: a suppressed release is protected together with everything
already published from the same records.

A *population* is the records of one dataset. Every suppressed release of it, whatever its
indicator, definition version, dimensions or data version, counts cells of one joint cube
(:mod:`disclosure.lattice`) over the dataset's base partition (:mod:`disclosure.partition`):
its dimensions and the attributes its filters slice, its cohort memberships, and the data
version (which submissions it counted). A new release is placed in that cube next to every
earlier one, and :func:`disclosure.protection.protect_jointly` chooses its secondary
suppression so that every requirement of every release holds in the one model of everything
published; a count that the releases together determine without publishing it (the children
not ready, from a count of all children and a count of the ready ones) is protected too.

This module is the pure part: records as a frame of category labels in, protection out. What
reads the records and the earlier releases from the database is :mod:`aggregation.population`.

A data version that only some releases count (a late batch) is read by them alone: its records
are held in one category of every attribute none of them reads (:func:`_unread_axes`), which
changes no count any release publishes and takes the batch's unpublished cells out of the
attacker's programs.

Nothing here depends on anything but the request and what was published when it refuses: a
filter that is not a slice, or a joint cube too large to audit (``PopulationTooDetailed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from agreements.categories import TRUE, dataset_attributes
from core.errors import InvalidInput
from disclosure.cube import Cube, label_positions
from disclosure.lattice import Axis, Lattice
from disclosure.partition import NotPartitionFilter, cohort_attribute, parse_slices
from disclosure.protection import (
    EarlierRelease,
    Placement,
    Protection,
    PublishedTable,
    protect,
    protect_jointly,
)
from policy.model import DatasetTerms
from policy.vocabulary import RoundingScheme

VERSION_AXIS = "data_version"
REST = "_rest"
PERSON = "__person"
SUBMISSION = "__submission"
MAX_CELLS = 400_000  # the joint cube above this is refused: its programs would take too long

Limits = dict[tuple[int, str], tuple[float, float]]


class PopulationTooDetailed(InvalidInput):
    kind = "population-too-detailed"
    title = "Everything published from this dataset is too detailed to audit together"


@dataclass(frozen=True)
class CohortRef:
    dataset: str
    slices: Mapping[str, str]


@dataclass(frozen=True)
class Shape:
    """Where a suppressed release's counts sit in its population's partition: its dimensions
    (with their categories) and the slices its numerator and denominator count."""

    dataset: str
    dims: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    numerator: Mapping[str, str]
    denominator: Mapping[str, str] | None
    cohorts: Mapping[str, CohortRef] = field(default_factory=dict)

    @property
    def attributes(self) -> set[str]:
        out = set(self.dims) | set(self.numerator)
        if self.denominator is not None:
            out |= set(self.denominator)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "dims": [
                {"attribute": d, "categories": list(c)}
                for d, c in zip(self.dims, self.categories, strict=True)
            ],
            "numerator": dict(sorted(self.numerator.items())),
            "denominator": None
            if self.denominator is None
            else dict(sorted(self.denominator.items())),
            "cohorts": {
                name: {"dataset": ref.dataset, "slices": dict(sorted(ref.slices.items()))}
                for name, ref in sorted(self.cohorts.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Shape:
        return cls(
            dataset=str(data["dataset"]),
            dims=tuple(str(d["attribute"]) for d in data["dims"]),
            categories=tuple(tuple(str(c) for c in d["categories"]) for d in data["dims"]),
            numerator=dict(data["numerator"]),
            denominator=None if data["denominator"] is None else dict(data["denominator"]),
            cohorts={
                name: CohortRef(str(ref["dataset"]), dict(ref["slices"]))
                for name, ref in data.get("cohorts", {}).items()
            },
        )


def release_shape(
    dataset: DatasetTerms,
    dims: Sequence[str],
    numerator_filter: str | None,
    denominator_filter: str | None,
    rate: bool,
    cohort: tuple[DatasetTerms, str | None] | None = None,
) -> Shape:
    """The shape of a suppressed release, from the request alone; raises
    :class:`NotPartitionFilter` when a filter is not a slice of the declared categories."""
    attrs = dataset_attributes(dataset)
    categories: list[tuple[str, ...]] = []
    for d in dims:
        attr = attrs.get(d)
        if attr is None:
            raise NotPartitionFilter(
                f"{d} is not a dimension with declared categories of dataset {dataset.name};"
                f" those are {', '.join(sorted(attrs)) or 'none'}."
            )
        categories.append(attr.categories)
    population = parse_slices(denominator_filter, attrs)
    outcome = parse_slices(numerator_filter, attrs)
    for name, label in population.items():
        if outcome.get(name, label) != label:
            raise NotPartitionFilter(
                f"The numerator gives {name} another value than the denominator: it would count"
                " no one."
            )
    both = set(dims) & (set(population) | set(outcome))
    if both:
        raise NotPartitionFilter(
            f"{', '.join(sorted(both))} is both a dimension and a filter of this indicator."
        )
    cohorts: dict[str, CohortRef] = {}
    if cohort is not None:
        cohort_terms, cohort_filter = cohort
        slices = parse_slices(cohort_filter, dataset_attributes(cohort_terms))
        attr = cohort_attribute(cohort_terms.name, slices)
        cohorts[attr.name] = CohortRef(cohort_terms.name, slices)
        population = {**population, attr.name: TRUE}
    numerator = {**population, **outcome}
    return Shape(
        dataset=dataset.name,
        dims=tuple(dims),
        categories=tuple(categories),
        numerator=numerator,
        denominator=dict(population) if rate else None,
        cohorts=cohorts,
    )


@dataclass(frozen=True)
class Obligations:
    k: int
    rounding: str = RoundingScheme.NONE.value
    top_code_percent: float | None = None
    bottom_code_percent: float | None = None


@dataclass(frozen=True)
class Earlier:
    """An earlier suppressed release of the population: where it sits, over which submissions,
    what it published, and the true counts it was computed from (with its limited
    requirements)."""

    shape: Shape
    scope: frozenset[str]
    published: PublishedTable
    x: np.ndarray
    n: np.ndarray | None
    limits: Limits = field(default_factory=dict)


@dataclass(frozen=True)
class Population:
    """The records in scope now, one row per record: ``__person`` (an integer per person),
    ``__submission`` and one column of category labels per attribute (null when missing);
    ``declared`` holds each attribute's categories, ``structural_zeros`` the combinations the
    agreement declares impossible."""

    records: pl.DataFrame
    declared: Mapping[str, tuple[str, ...]]
    structural_zeros: tuple[tuple[tuple[str, str], ...], ...] = ()
    # The dataset's period attribute and each submission's declared period (label): ingest
    # refuses a record outside its submission's period, so a submission has none elsewhere.
    period_field: str | None = None
    periods: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Joint:
    """The protected release, its own true counts, and the joint audit's figures."""

    protection: Protection
    x: np.ndarray
    n: np.ndarray | None
    summary: dict[str, Any]


@dataclass
class _Axes:
    """The attributes of the joint cube and their categories.

    An attribute that some release breaks down by keeps every category it has (the current
    declaration first, then any an earlier release published that the agreement no longer
    declares). An attribute releases only slice has the categories they select, and one
    ``_rest`` category for all the others (see :class:`disclosure.lattice.Axis`).
    """

    order: list[str] = field(default_factory=list)
    full: dict[str, list[str]] = field(default_factory=dict)
    dims: set[str] = field(default_factory=set)
    selected: dict[str, set[str]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, set[frozenset[int]]] = field(default_factory=dict)

    def _known(self, name: str, labels: Iterable[str]) -> None:
        if name not in self.full:
            self.order.append(name)
            self.full[name] = []
            self.selected[name] = set()
            self.groups[name] = set()
        for text in labels:
            if text not in self.full[name]:
                self.full[name].append(text)

    def dimension(self, name: str, declared: Iterable[str], labels: Iterable[str]) -> None:
        self._known(name, declared)
        self._known(name, labels)
        self.dims.add(name)

    def slice(self, name: str, declared: Iterable[str], text: str) -> None:
        self._known(name, declared)
        self._known(name, (text,))
        self.selected[name].add(text)

    def finish(self, shapes: Sequence[Shape]) -> None:
        for name in self.order:
            full = self.full[name]
            if name in self.dims:
                self.categories[name] = list(full)
                continue
            chosen = [text for text in full if text in self.selected[name]]
            self.categories[name] = chosen + ([REST] if len(chosen) < len(full) else [])
        for item in shapes:
            for name, cats in zip(item.dims, item.categories, strict=True):
                group = self.group_of(name, cats)
                if group != frozenset(range(len(self.categories[name]))) and len(group) > 1:
                    self.groups[name].add(group)

    def rest(self, name: str) -> int | None:
        cats = self.categories[name]
        return len(cats) - 1 if cats and cats[-1] == REST else None

    def recode(self, name: str) -> dict[str, int]:
        """Position in the cube of every known category (those no release tells apart: rest)."""
        cats = self.categories[name]
        rest = self.rest(name)
        out: dict[str, int] = {}
        for text in self.full[name]:
            position = cats.index(text) if text in cats else rest
            assert position is not None
            out[text] = position
        return out

    def group_of(self, name: str, labels: Sequence[str]) -> frozenset[int]:
        return frozenset(self.categories[name].index(text) for text in labels)

    def axis(self, name: str) -> Axis:
        return Axis(
            name,
            tuple(self.categories[name]),
            tuple(sorted(self.groups[name], key=sorted)),
            self.rest(name),
        )


def _placement(lattice: Lattice, axes: _Axes, shape: Shape, version: int | None) -> Placement:
    """Where the cells of a release of ``shape`` sit; ``version`` is its position on the
    data-version axis (None when there is no such axis)."""
    dims: list[tuple[int, list[int]]] = []
    for name, cats in zip(shape.dims, shape.categories, strict=True):
        a = lattice.axis(name)
        axis = lattice.axes[a]
        positions = [axis.category(text) for text in cats]
        positions.append(axis.group(axes.group_of(name, cats)))
        dims.append((a, positions))

    def fixed(slices: Mapping[str, str]) -> dict[int, int]:
        out = {
            lattice.axis(name): lattice.axes[lattice.axis(name)].category(text)
            for name, text in slices.items()
        }
        if version is not None:
            out[lattice.axis(VERSION_AXIS)] = version
        return out

    x = lattice.place(dims, fixed(shape.numerator))
    n = None if shape.denominator is None else lattice.place(dims, fixed(shape.denominator))
    return Placement(x, n)


def placeable(shape: Shape, declared: Mapping[str, tuple[str, ...]]) -> bool:
    """Whether the records can still be counted by every attribute of ``shape``."""
    return shape.attributes <= set(declared)


def protect_in_population(
    population: Population,
    shape: Shape,
    earlier: Sequence[Earlier],
    obligations: Obligations,
    unit: str,
    scope: frozenset[str] | None = None,
    timer: Callable[[], float] | None = None,
    counted: Callable[[], None] | None = None,
) -> Joint:
    """Protect a release of ``shape`` over the submissions ``scope`` (default: every record of
    ``population``) jointly with the ``earlier`` releases that share records with it.

    ``population`` holds the records of ``scope`` and of every submission an earlier release
    counted whose records still exist (withdrawn or replaced, not yet destroyed): they are
    classes of the data-version axis, so that an earlier release over them is placed exactly.
    An earlier release whose records are partly destroyed is placed on what remains, with the
    difference known to the attacker (see :mod:`disclosure.protection`).

    ``counted``, if given, is called once the true counts are computed, before suppression and
    its audit (a caller's progress report)."""
    records = population.records
    available = (
        frozenset(records.get_column(SUBMISSION).unique().to_list())
        if records.height
        else frozenset()
    )
    current = frozenset(scope) if scope is not None else available
    linked = [
        e
        for e in earlier
        if e.scope & available and current & available and placeable(e.shape, population.declared)
    ]
    items = [shape, *(e.shape for e in linked)]
    axes = _Axes()
    for item in items:
        for name, cats in zip(item.dims, item.categories, strict=True):
            axes.dimension(name, population.declared[name], cats)
        for slices in (item.numerator, item.denominator or {}):
            for name, text in slices.items():
                axes.slice(name, population.declared[name], text)
    axes.finish(items)

    # The data version: classes of the submissions with records, by which of this release and
    # the earlier ones counted them.
    signature = {
        sid: (sid in current, *(sid in e.scope for e in linked)) for sid in sorted(available)
    }
    classes = sorted(set(signature.values()))
    lattice_axes = [axes.axis(name) for name in axes.order]
    version_axis: Axis | None = None
    class_of = {sig: i for i, sig in enumerate(classes)}
    if len(classes) > 1:
        groups = set()
        for i in range(len(linked) + 1):
            members = frozenset(class_of[sig] for sig in classes if sig[i])
            if 1 < len(members) < len(classes):
                groups.add(members)
        version_axis = Axis(
            VERSION_AXIS,
            tuple(f"v{i}" for i in range(len(classes))),
            tuple(sorted(groups, key=sorted)),
        )
        lattice_axes.append(version_axis)
    names = [a.name for a in lattice_axes]
    tables: list[frozenset[int]] = []
    for item in items:
        used = {names.index(a) for a in item.attributes}
        if version_axis is not None:
            used.add(names.index(VERSION_AXIS))
        tables.append(frozenset(used))
    lattice = Lattice(tuple(lattice_axes), tuple(tables))
    if lattice.size > MAX_CELLS:
        raise PopulationTooDetailed(
            f"Together with the releases already published from {shape.dataset}, this release"
            f" would need a joint table of {lattice.size:,} cells to audit (at most"
            f" {MAX_CELLS:,}). Publish it along fewer dimensions, or by differential privacy."
        )
    version_of: list[int | None] = [None] * len(linked)
    own: int | None = None
    if version_axis is not None:
        positions = [
            version_axis.group(frozenset(class_of[sig] for sig in classes if sig[i]))
            if any(sig[i] for sig in classes)
            else None
            for i in range(len(linked) + 1)
        ]
        own, version_of = positions[0], positions[1:]

    # The records, coded along every axis.
    axis_codes = [
        label_positions(records.get_column(name), axes.recode(name)) for name in axes.order
    ]
    collapsed: dict[int, list[tuple[int, int]]] = {}
    if version_axis is not None:
        by_submission = {sid: class_of[sig] for sid, sig in signature.items()}
        axis_codes.append(label_positions(records.get_column(SUBMISSION), by_submission))
        collapsed = _unread_axes(lattice, items, classes)
        _collapse_codes(axis_codes, collapsed)
    truth = lattice.counts(records.get_column(PERSON).to_numpy(), axis_codes)
    if counted is not None:
        counted()
    impossible = _impossible(lattice, axes, population.structural_zeros)
    if version_axis is not None:
        # What the data holds is allowed too: were ingest ever to let a record outside its
        # declared period through, the model must stay true to the counts it is given.
        pf = population.period_field
        held: dict[str, set[str]] = {}
        if pf is not None and pf in records.columns and records.height:
            for sid, labels in (
                records.group_by(SUBMISSION).agg(pl.col(pf).drop_nulls().unique()).iter_rows()
            ):
                held[str(sid)] = {str(label) for label in labels}
        by_class: dict[int, set[str] | None] = {}
        for sid, sig in signature.items():
            c = class_of[sig]
            period = population.periods.get(sid)
            known = by_class.get(c, set())
            by_class[c] = (
                None if known is None or period is None else known | {period} | held.get(sid, set())
            )
        impossible = impossible | _outside_periods(lattice, axes, population.period_field, by_class)
    if collapsed:
        impossible = _collapse_impossible(impossible, collapsed)
    zeros = lattice.zeros(impossible) if impossible.any() else np.zeros(0, dtype=np.int64)

    # This release's table.
    placement = _placement(lattice, axes, shape, own)
    table_shape = tuple(len(c) + 1 for c in shape.categories)
    x = truth[placement.x].reshape(table_shape).astype(np.int64)
    n = None if placement.n is None else truth[placement.n].reshape(table_shape).astype(np.int64)
    table = Cube(shape.dims, shape.categories, x, n)
    empty_vars = np.zeros(lattice.size, dtype=bool)
    empty_vars[zeros] = True
    structural = empty_vars[placement.n if placement.n is not None else placement.x].reshape(
        table_shape
    )

    layers: list[EarlierRelease] = []
    seen: set[bytes] = set()
    for e, version in zip(linked, version_of, strict=True):
        if version_axis is not None and version is None:
            continue  # none of its records exist any more: it shares nothing with this one
        place = _placement(lattice, axes, e.shape, version)
        published = e.published
        key = b"|".join(
            [
                place.x.tobytes(),
                b"" if place.n is None else place.n.tobytes(),
                e.x.tobytes(),
                b"" if e.n is None else e.n.tobytes(),
                repr(published.status.ravel().tolist()).encode(),
                repr(
                    (
                        published.k,
                        published.rounding,
                        published.top_code_percent,
                        published.bottom_code_percent,
                        published.protection_level,
                    )
                ).encode(),
            ]
        )
        if key in seen:  # the same counts published alike: one set of facts
            continue
        seen.add(key)
        # Counts of records that changed since (a submission withdrawn, a cohort grown) differ
        # from the space's at the same place; protect_jointly takes the difference as known.
        layers.append(EarlierRelease(published, place, e.x, e.n, e.limits))

    options: dict[str, Any] = {
        "unit": unit,
        "rounding": obligations.rounding,
        "top_code_percent": obligations.top_code_percent,
        "bottom_code_percent": obligations.bottom_code_percent,
        "structural": structural,
        "timer": timer,
    }
    if not layers:
        # Nothing earlier shares its records: its own table is the whole model, where its own
        # hypercube moves are witnesses.
        protection = protect(table, obligations.k, **options)
    else:
        protection = protect_jointly(
            lattice.space,
            truth,
            table,
            placement,
            obligations.k,
            earlier=layers,
            zeros=zeros,
            implied=np.setdiff1d(lattice.implied_cells(), zeros),
            **options,
        )
    summary = {
        **protection.proof.summary(),
        "joint_cells": lattice.size,
        "earlier_releases": len(layers),
        "data_versions": len(classes),
    }
    return Joint(protection, x, n, summary)


def _unread_axes(
    lattice: Lattice, items: Sequence[Shape], classes: Sequence[tuple[bool, ...]]
) -> dict[int, list[tuple[int, int]]]:
    """Per data-version class, the attributes no release counting that class reads, each with
    the category its records are moved to (see :func:`_collapse_codes`).

    A class that only some releases count (a late batch, counted only by the release being
    made) is read by them alone: along an attribute none of them breaks down by or slices,
    every count that holds the class's records sums over all its categories. Holding the
    class's records in one category of that attribute changes no count that any release
    publishes or that the audit protects, and the attacker's ranges of those counts are the
    same, while the class's cells along that attribute (a late batch's neighborhoods x races,
    none of them published) leave the programs: each was one more unknown."""
    out: dict[int, list[tuple[int, int]]] = {}
    for c, signature in enumerate(classes):
        read: set[str] = set()
        for counts, item in zip(signature, items, strict=True):
            if counts:
                read |= item.attributes
        moves = []
        for a, axis in enumerate(lattice.axes):
            if axis.name == VERSION_AXIS or axis.name in read or axis.total < 2:
                continue
            # Not the rest category: its cells are protected as implied counts.
            moves.append((a, 1 if axis.rest == 0 else 0))
        if moves:
            out[c] = moves
    return out


def _collapse_codes(
    codes: list[np.ndarray], collapsed: Mapping[int, list[tuple[int, int]]]
) -> None:
    """Move each class's records to the one category of every attribute it is not read by."""
    version = codes[-1]
    for c, moves in collapsed.items():
        members = version == c
        for a, target in moves:
            column = codes[a]
            if not column.flags.writeable:
                column = codes[a] = column.copy()
            column[members & (column >= 0)] = target


def _collapse_impossible(
    impossible: np.ndarray, collapsed: Mapping[int, list[tuple[int, int]]]
) -> np.ndarray:
    """The finest cells left empty by :func:`_collapse_codes`: every other category of a
    collapsed attribute, and the kept one where every category was impossible already."""
    out = np.array(impossible, dtype=bool, copy=True)
    v = out.ndim - 1
    for c, moves in collapsed.items():
        part = np.take(out, c, axis=v)
        for a, target in moves:
            all_impossible = part.all(axis=a, keepdims=True)
            part = np.ones_like(part)
            index: list[Any] = [slice(None)] * part.ndim
            index[a] = slice(target, target + 1)
            # Only the kept category may hold records, where some category could before.
            part[tuple(index)] = all_impossible
        index = [slice(None)] * out.ndim
        index[v] = c
        out[tuple(index)] = part
    return out


def _outside_periods(
    lattice: Lattice,
    axes: _Axes,
    period_field: str | None,
    by_class: Mapping[int, set[str] | None],
) -> np.ndarray:
    """Finest cells of the joint cube that pair a data version with a period none of its
    submissions declared (``by_class``: per version class, the declared periods, None when some
    submission declared none): empty, since ingest refuses a record outside its submission's
    period. Without this, the records of a new submission could be in any period, and the cells
    of periods it cannot touch would need protecting as if they were small counts."""
    out = np.zeros(tuple(a.total for a in lattice.axes), dtype=bool)
    names = [a.name for a in lattice.axes]
    if period_field is None or period_field not in names or VERSION_AXIS not in names:
        return out
    p_axis, v_axis = names.index(period_field), names.index(VERSION_AXIS)
    recode = axes.recode(period_field)
    members: dict[int, set[str]] = {}
    for text, position in recode.items():
        members.setdefault(position, set()).add(text)
    for c, periods in by_class.items():
        if periods is None:
            continue
        for position, texts in members.items():
            if texts.isdisjoint(periods):
                index: list[Any] = [slice(None)] * len(names)
                index[p_axis], index[v_axis] = position, c
                out[tuple(index)] = True
    return out


def _impossible(
    lattice: Lattice, axes: _Axes, combinations: Sequence[Sequence[tuple[str, str]]]
) -> np.ndarray:
    """The joint cube's finest cells the agreement declares impossible.

    A combination over an attribute the cube does not have empties nothing it counts (its cells
    sum over that attribute); a ``_rest`` category is empty only where every category it
    stands for is."""
    if not combinations or not lattice.axes:
        return np.zeros(tuple(a.total for a in lattice.axes), dtype=bool)
    names = [a.name for a in lattice.axes]
    full_shape = [
        len(axes.full[name]) if name in axes.full else lattice.axes[i].total
        for i, name in enumerate(names)
    ]
    impossible = np.zeros(full_shape, dtype=bool)
    for combo in combinations:
        index: list[Any] = [slice(None)] * len(names)
        applies = True
        for name, text in combo:
            if name not in names or name not in axes.full or text not in axes.full[name]:
                applies = False
                break
            index[names.index(name)] = axes.full[name].index(text)
        if applies:
            impossible[tuple(index)] = True
    for i, name in enumerate(names):
        if name not in axes.full:
            continue
        recode = axes.recode(name)
        positions = np.asarray([recode[text] for text in axes.full[name]])
        reduced = [
            np.all(np.take(impossible, np.flatnonzero(positions == pos), axis=i), axis=i)
            for pos in range(lattice.axes[i].total)
        ]
        impossible = np.stack(reduced, axis=i)
    return impossible
