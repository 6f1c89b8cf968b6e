"""The joint cube of a population: one axis per attribute that any suppressed release of its
records publishes, with every count any of them published as one cell.

An axis has its categories, then its groups: the total (every category) first, then any other
set of categories a release counted together. The data-version axis is the one that has such
groups: its categories are the classes of submissions (those that were in the same releases),
and each release counted the group of classes its submissions made up. An attribute whose
categories changed between agreement versions has a group for each older category list too.

Counts are of distinct people. A person in several categories of an axis (a child in two school
years) is counted once in every group holding them, so a group is not in general the sum of its
members; the line constraints of the attacker's model (:mod:`disclosure.attacker`) carry the
difference, which the attacker is assumed to know.

Why our own code: this is the cube of :mod:`disclosure.cube` with groups besides the total and
over every attribute of a population at once; counting is vectorized with numpy and polars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from disclosure.attacker import Space


@dataclass(frozen=True)
class Axis:
    """An attribute of the joint cube: positions are the categories, the total, then groups.

    ``rest`` is the position of a category that stands for every declared category no release
    tells apart (it is never published): merging them loses nothing, since no published count
    separates them, and its cells are determined by their line along this axis.
    """

    name: str
    categories: tuple[str, ...]
    groups: tuple[frozenset[int], ...] = ()
    rest: int | None = None

    @property
    def size(self) -> int:
        return len(self.categories) + 1 + len(self.groups)

    @property
    def total(self) -> int:
        return len(self.categories)

    def members(self, position: int) -> tuple[int, ...]:
        """The categories a position counts."""
        if position < self.total:
            return (position,)
        if position == self.total:
            return tuple(range(self.total))
        return tuple(sorted(self.groups[position - self.total - 1]))

    def group(self, members: frozenset[int]) -> int:
        """The position that counts exactly ``members`` (a category, the total or a group)."""
        if len(members) == 1:
            return next(iter(members))
        if members == frozenset(range(self.total)):
            return self.total
        return self.total + 1 + self.groups.index(members)

    def category(self, label: str) -> int:
        return self.categories.index(label)


def cliques(axes: int, tables: Sequence[frozenset[int]]) -> tuple[frozenset[int], ...]:
    """The maximal cliques of a chordal completion of the tables' attribute sets (a junction
    tree), by minimum-fill elimination: the smallest joint tables the attacker's model needs."""
    adjacent: dict[int, set[int]] = {a: set() for a in range(axes)}
    for table in tables:
        for a in table:
            adjacent[a] |= table - {a}
    remaining = set(range(axes))
    found: list[frozenset[int]] = []

    def fill(v: int) -> int:
        near = adjacent[v] & remaining
        return sum(1 for a in near for b in near if a < b and b not in adjacent[a])

    while remaining:
        v = min(remaining, key=lambda v: (fill(v), len(adjacent[v] & remaining), v))
        near = adjacent[v] & remaining
        for a in near:
            adjacent[a] |= near - {a}
        found.append(frozenset(near | {v}))
        remaining.remove(v)
    return tuple(c for c in found if not any(c < d for d in found))


@dataclass(frozen=True)
class Lattice:
    """The joint cube over ``axes``. ``tables`` are the attribute sets (axis indices) of the
    releases placed in it: the model keeps only the cells of the cliques of their junction tree
    (see :meth:`space`)."""

    axes: tuple[Axis, ...]
    tables: tuple[frozenset[int], ...] | None = None
    shape: tuple[int, ...] = field(init=False)
    strides: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        shape = tuple(a.size for a in self.axes)
        strides = tuple(int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(len(shape)))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "strides", strides)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def axis(self, name: str) -> int:
        for i, a in enumerate(self.axes):
            if a.name == name:
                return i
        raise KeyError(name)

    @cached_property
    def space(self) -> Space:
        """The joint cube as the attacker's space: one count per cell, lines per group.

        Only the lines of the junction tree's cliques are kept: a cell that breaks down by
        attributes no clique holds together (race and pre-K attendance together, when no
        release publishes them together) is left out of every line. For counts that add up,
        this loses nothing: consistent tables on a junction tree always extend to a
        non-negative joint cube (the product of the cliques over the separators), so the
        attacker's range of any published count is the same with or without those cells;
        and the programs no longer chain every cell of the cube into one component."""
        size = self.size
        flat = np.arange(size).reshape(self.shape)
        kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        dropped: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        absorbers: list[np.ndarray] = []
        coords = np.indices(self.shape).reshape(len(self.shape), size)
        inside = self._in_cliques(coords)
        at_rest = [
            coords[a] == axis.rest if axis.rest is not None else np.zeros(size, dtype=bool)
            for a, axis in enumerate(self.axes)
        ]
        for a, axis in enumerate(self.axes):
            cells = np.moveaxis(flat, a, -1).reshape(-1, axis.size)
            # A line along this axis where another axis is at its rest category is implied by
            # the lines that define those rest cells; leaving it out keeps the rest cells out of
            # every line but their own, so the programs split into small components.
            others = np.zeros(size, dtype=bool)
            for b in range(len(self.axes)):
                if b != a:
                    others |= at_rest[b]
            cells = cells[inside[cells[:, 0]]]
            keep = ~others[cells[:, 0]]
            for part, out in ((cells[keep], kept), (cells[~keep], dropped)):
                count = part.shape[0]
                for position in range(axis.total, axis.size):
                    members = list(axis.members(position))
                    block = np.concatenate([part[:, members], part[:, [position]]], axis=1)
                    signs = np.ones(len(members) + 1)
                    signs[-1] = -1.0
                    out.append(
                        (
                            np.repeat(np.arange(count), len(members) + 1),
                            block.ravel(),
                            np.tile(signs, count),
                        )
                    )
                    if out is kept:
                        rest = axis.rest if axis.rest in members else None
                        absorbers.append(part[:, rest] if rest is not None else np.full(count, -1))
        # Slices for cheap sweeps: along an axis with a rest category, its categories alone
        # (totals held) and its totals alone (categories held), the rest cells taking up the
        # difference; in a rate's outcome axis, the numerators alone and the denominators alone.
        slices: list[np.ndarray] = []
        for a, axis in enumerate(self.axes):
            if axis.rest is None:
                continue
            at_total = coords[a] == axis.total
            counted = (coords[a] < axis.total) & (coords[a] != axis.rest)
            slices.extend([at_total, counted])
        return Space(
            size,
            _stack(kept, size),
            coords.T,
            slices=tuple(slices),
            implied=_stack(dropped, size),
            absorber=np.concatenate(absorbers) if absorbers else np.zeros(0, dtype=np.int64),
        )

    def implied_cells(self) -> np.ndarray:
        """Cells that count one rest category (and nothing else unpublished) inside a clique:
        counts that no release publishes but that the published cells around them determine
        (total minus the published categories)."""
        coords = np.indices(self.shape).reshape(len(self.shape), self.size)
        rests = np.zeros(self.size, dtype=np.int64)
        for a, axis in enumerate(self.axes):
            if axis.rest is not None:
                rests += coords[a] == axis.rest
        return np.flatnonzero((rests == 1) & self._in_cliques(coords))

    def _in_cliques(self, coords: np.ndarray) -> np.ndarray:
        """Per cell, whether the attributes it breaks down by (every axis not at its total) lie
        in one clique; a line is kept when its members' cells are."""
        if self.tables is None:
            return np.ones(coords.shape[1], dtype=bool)
        involved = np.zeros(coords.shape[1], dtype=np.int64)
        for a, axis in enumerate(self.axes):
            involved |= (coords[a] != axis.total).astype(np.int64) << a
        out = np.zeros(coords.shape[1], dtype=bool)
        for clique in cliques(len(self.axes), self.tables):
            mask = sum(1 << a for a in clique)
            out |= (involved & ~mask) == 0
        return out

    def flat(self, positions: Sequence[int]) -> int:
        """The flat index of the cell at these positions (one per axis)."""
        return int(sum(p * s for p, s in zip(positions, self.strides, strict=True)))

    def place(
        self, dims: Sequence[tuple[int, Sequence[int]]], fixed: Mapping[int, int]
    ) -> np.ndarray:
        """Flat cells of a table: ``dims`` are (axis, positions of its cells in table order),
        ``fixed`` the position of other axes (the total where not given); C order."""
        base = 0
        dim_axes = {a for a, _ in dims}
        for a, axis in enumerate(self.axes):
            if a not in dim_axes:
                base += self.strides[a] * fixed.get(a, axis.total)
        out = np.array([base], dtype=np.int64)
        for a, positions in dims:
            out = (out[:, None] + self.strides[a] * np.asarray(positions, dtype=np.int64)).ravel()
        return out

    # -- counting ----------------------------------------------------------------------------
    def _finest_flat(self, codes: Sequence[np.ndarray]) -> np.ndarray:
        # The cube has at most a few hundred thousand cells (disclosure.joint.MAX_CELLS): its
        # flat index fits 32 bits, half the memory per record of 64.
        kind = np.int32 if self.size < 2**31 else np.int64
        out = np.zeros(codes[0].shape if codes else (0,), dtype=kind)
        for a, c in enumerate(codes):
            out += (self.strides[a] * c).astype(kind, copy=False)
        return out

    def _aggregate(self, out: np.ndarray) -> None:
        """Fill every total and group position by summing its members, axis by axis."""
        for a, axis in enumerate(self.axes):
            for position in range(axis.total, axis.size):
                members = list(axis.members(position))
                index: list[Any] = [slice(None)] * len(self.axes)
                index[a] = position
                out[tuple(index)] = np.take(out, members, axis=a).sum(axis=a)

    def counts(self, person: np.ndarray, codes: Sequence[np.ndarray]) -> np.ndarray:
        """Distinct people of every cell, from each record's person id and category indexes
        (one array per axis; records with a missing category (-1) are not counted)."""
        out = np.zeros(self.shape, dtype=np.int64)
        if not self.axes:
            out[()] = int(np.unique(person).size)
            return out.ravel().astype(float)
        valid = np.ones(person.shape, dtype=bool)
        for c in codes:
            valid &= c >= 0
        if not valid.all():
            person = person[valid]
            codes = [c[valid] for c in codes]
        if person.size == 0:
            return out.ravel().astype(float)
        finest = self._finest_flat(codes)
        del codes
        # Most people have one record: they are counted where it is, with no pairing at all.
        # Only the records of people with several are paired with their cells (by sorting).
        repeated = _repeated(person)
        flat_out = out.ravel()
        flat_out[: self.size] += np.bincount(finest[~repeated], minlength=self.size)
        p, c = unique_pairs(person[repeated], finest[repeated])
        del finest
        # Sorted by person: someone in several finest cells has a neighbour with the same id.
        same = p[1:] == p[:-1]
        multi = np.zeros(p.size, dtype=bool)
        multi[1:] |= same
        multi[:-1] |= same
        # People in one finest cell: every total and group is a plain sum.
        np.add.at(flat_out, c[~multi], 1)
        out = flat_out.reshape(self.shape)
        self._aggregate(out)
        if np.any(multi):
            out += self._distinct(p[multi], c[multi])
        return out.ravel().astype(float)

    def _distinct(self, person: np.ndarray, finest: np.ndarray) -> np.ndarray:
        """Distinct counts of people in several finest cells: each (person, cell) pair is
        expanded to every position holding it, and distinct pairs are counted."""
        per_axis = []
        rest = finest.copy()
        for a in range(len(self.axes)):
            per_axis.append(rest // self.strides[a])
            rest = rest % self.strides[a]
        flat = np.zeros(person.size, dtype=np.int64)
        people = person
        carried = per_axis
        for a, axis in enumerate(self.axes):
            options = np.full((axis.total, axis.size - axis.total + 1), -1, dtype=np.int64)
            for cat in range(axis.total):
                holding = [cat] + [
                    pos for pos in range(axis.total, axis.size) if cat in axis.members(pos)
                ]
                options[cat, : len(holding)] = holding
            chosen = options[carried[a]]
            ok = chosen >= 0
            flat = (flat[:, None] + self.strides[a] * chosen)[ok]
            people = np.broadcast_to(people[:, None], chosen.shape)[ok]
            carried = [np.broadcast_to(x[:, None], chosen.shape)[ok] for x in carried]
        _, cells = unique_pairs(people, flat)
        counts = np.bincount(cells, minlength=self.size)
        return counts.reshape(self.shape).astype(np.int64)

    def zeros(self, impossible: np.ndarray) -> np.ndarray:
        """Cells that are structurally empty: ``impossible`` marks finest cells (shape of the
        categories) that cannot occur; a total or group is empty when all its members are."""
        out = np.zeros(self.shape, dtype=np.int64)
        inner = tuple(slice(0, a.total) for a in self.axes)
        out[inner] = (~np.asarray(impossible, dtype=bool)).astype(np.int64)
        self._aggregate(out)
        return np.flatnonzero(out.ravel() == 0)


def _repeated(values: np.ndarray) -> np.ndarray:
    """Which entries of ``values`` occur more than once. A distinct count settles the usual
    case (no repeats) with a few bytes a value; otherwise by sorting (polars' ``is_duplicated``
    held over 100 bytes a value)."""
    series = pl.Series(values)
    if series.n_unique() == series.len():
        return np.zeros(values.shape, dtype=bool)
    order = series.arg_sort().to_numpy()
    ordered = values[order]
    same = ordered[1:] == ordered[:-1]
    repeated = np.zeros(values.shape, dtype=bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    out = np.empty(values.shape, dtype=bool)
    out[order] = repeated
    return out


def unique_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (first, second) pairs, sorted by first then second.

    By sorting (multi-threaded, in polars) rather than hashing the pairs: polars' unique and
    group-by over two columns held about 250 bytes a row (5 GB for the 20 million records of
    ``bench.bench_release_scale``), a sort about a fifth of that."""
    if len(first) == 0:
        return np.asarray(first), np.asarray(second)
    ordered = pl.DataFrame({"a": first, "b": second}).sort("a", "b")
    a = ordered.get_column("a").to_numpy()
    b = ordered.get_column("b").to_numpy()
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[keep], b[keep]


def _stack(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int) -> sp.csr_matrix:
    """Blocks of (row, column, value) triples, each numbered from 0, as one matrix."""
    rows: list[np.ndarray] = []
    start = 0
    for r, _, _ in parts:
        rows.append(r + start)
        start += int(r.max()) + 1 if r.size else 0
    if not parts or start == 0:
        return sp.csr_matrix((0, size))
    return sp.csr_matrix(
        (
            np.concatenate([v for _, _, v in parts]),
            (np.concatenate(rows), np.concatenate([c for _, c, _ in parts])),
        ),
        shape=(start, size),
    )
