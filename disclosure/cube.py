"""A table of counts along dimensions, with every margin (totals along each dimension and the
grand total), computed from person-level records by distinct person.

The cube is a dense numpy array with one extra index per dimension that holds the total along it
(``TOTAL``), so a 2-dimensional table of 40 neighborhoods by 5 years has shape (41, 6).

Distinct-person counts are not additive in general: a child counted in two school years is one
child in the all-years total. Every margin is therefore a distinct count of its own, never a sum
of cells. Counting is vectorized: each person gets an exact integer id, each record the integer
code of its finest cell, and the distinct (person, cell) pairs are counted once. When every
person falls in exactly one finest cell (the common case) the margins are then exact sums; when
some person falls in several, each subset of dimensions is counted by distinct person over the
pairs, which stay small integers however wide the linkage tokens are.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

TOTAL = "_T"
_HASH_SEED_2 = 0x5EED_2026_1205
_HASH_SEED = 0x5EED


@dataclass(frozen=True)
class Cube:
    dimensions: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]  # per dimension, excluding the total
    numerator: np.ndarray
    denominator: np.ndarray | None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) + 1 for c in self.categories)

    @property
    def is_rate(self) -> bool:
        return self.denominator is not None

    def coordinates(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(n) for n in self.shape)))

    def labels(self, index: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(
            TOTAL if i == len(cats) else cats[i]
            for i, cats in zip(index, self.categories, strict=True)
        )

    def index_of(self, labels: Sequence[str]) -> tuple[int, ...]:
        """The index of the cell with these labels (``TOTAL`` for a margin); KeyError if unknown."""
        if len(labels) != len(self.dimensions):
            raise KeyError("wrong number of labels")
        out: list[int] = []
        for label, cats in zip(labels, self.categories, strict=True):
            if label == TOTAL:
                out.append(len(cats))
            else:
                out.append(cats.index(label))
        return tuple(out)

    def project(self, dimensions: Sequence[str]) -> Cube:
        """The table of a subset of the dimensions, in the given order, with its margins.

        Exact because every margin of the cube is itself a distinct count: the cells of the
        smaller table are the cube's cells that sit at the total of each dropped dimension.
        """
        dims = tuple(dimensions)
        if len(set(dims)) != len(dims) or any(d not in self.dimensions for d in dims):
            raise ValueError("project() takes distinct dimensions of the cube")
        keep = [self.dimensions.index(d) for d in dims]
        slicer = tuple(
            slice(None) if i in keep else len(cats) for i, cats in enumerate(self.categories)
        )
        # Integer indexing drops the other axes; the kept axes remain in the cube's order.
        kept_in_order = sorted(keep)
        order = [kept_in_order.index(i) for i in keep]

        def cut(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(np.transpose(a[slicer], order))

        return Cube(
            dimensions=dims,
            categories=tuple(self.categories[i] for i in keep),
            numerator=cut(self.numerator),
            denominator=None if self.denominator is None else cut(self.denominator),
        )


def person_ids(column: pl.Series) -> np.ndarray:
    """Exact integer ids for the values of ``column`` (equal values, equal ids).

    A 64-bit hash is used when it provably separates the values (as many distinct hashes as
    distinct values), which is all but always; otherwise the dense rank, which is exact but sorts.
    """
    hashed = column.hash(seed=_HASH_SEED)
    distinct_hashes = hashed.n_unique()
    if distinct_hashes == column.len() or distinct_hashes == column.n_unique():
        return hashed.to_numpy()
    return column.rank("dense").cast(pl.UInt64).to_numpy()  # pragma: no cover - hash collision


def label_positions(column: pl.Series, where: Mapping[str, int]) -> np.ndarray:
    """Each value's position (``where``: label -> position; -1 for a missing value or one
    with no position), as small integers. A column of an enumeration (as the services read
    records) is mapped through its categories, never turned back into text."""
    if isinstance(column.dtype, pl.Enum):
        categories = column.dtype.categories.to_list()
        table = np.array([where.get(c, -1) for c in categories] + [-1], dtype=np.int32)
        physical = column.to_physical().fill_null(len(categories)).to_numpy()
        out: np.ndarray = table[physical]
        return out
    coded: np.ndarray = (
        column.cast(pl.String)
        .replace_strict(list(where), list(where.values()), default=-1, return_dtype=pl.Int32)
        .fill_null(-1)
        .to_numpy()
    )
    return coded


def person_hashes(column: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Two independent 64-bit hashes of every person's identifier: computed part by part (a
    submission at a time, equal values hash alike in every part), then made ids by
    :func:`person_ids_of`, without holding every identifier at once."""
    return column.hash(seed=_HASH_SEED), column.hash(seed=_HASH_SEED_2)


def person_ids_of(first: pl.Series, second: pl.Series) -> np.ndarray:
    """Integer ids for people given by their two hashes (:func:`person_hashes`): the first
    hash when it tells apart as many people as the second (a collision of the first makes it
    tell apart fewer), else the dense rank of the pair. Two people are merged only if each hash
    has a collision, which for 20 million people is about one chance in ten billion."""
    if first.len() == 0:
        return np.zeros(0, dtype=np.uint64)
    # Two single-column counts, not the pairs': polars holds about 250 bytes a row to hash
    # pairs of columns (see disclosure.lattice.unique_pairs).
    if first.n_unique() == second.n_unique():
        return first.to_numpy()
    pairs = pl.DataFrame({"a": first, "b": second})  # pragma: no cover - a collision
    ranked = pairs.unique().sort("a", "b").with_row_index("__id")  # pragma: no cover
    out: np.ndarray = (  # pragma: no cover
        pairs.join(ranked, on=["a", "b"], how="left", maintain_order="left")
        .get_column("__id")
        .cast(pl.UInt64)
        .to_numpy()
    )
    return out  # pragma: no cover


def _encoded(
    frame: pl.DataFrame, person: str, dims: tuple[str, ...], categories: tuple[tuple[str, ...], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(person ids, finest-cell codes) of the rows whose values are all declared categories."""
    exprs: list[pl.Expr] = [pl.col(person).alias("__person")]
    for i, (d, cats) in enumerate(zip(dims, categories, strict=True)):
        exprs.append(
            pl.col(d)
            .cast(pl.String)
            .replace_strict(list(cats), list(range(len(cats))), default=None, return_dtype=pl.Int64)
            .alias(f"__d{i}")
        )
    coded = frame.select(exprs).drop_nulls()
    cell = np.zeros(coded.height, dtype=np.int64)
    for i, cats in enumerate(categories):
        cell = cell * len(cats) + coded.get_column(f"__d{i}").to_numpy()
    return person_ids(coded.get_column("__person")), cell


def _fill_margins_by_sum(out: np.ndarray) -> None:
    for axis, size in enumerate(out.shape):
        interior = np.take(out, np.arange(size - 1), axis=axis).sum(axis=axis)
        index = [slice(None)] * out.ndim
        index[axis] = size - 1
        out[tuple(index)] = interior


def _distinct_counts(
    frame: pl.DataFrame, person: str, dims: tuple[str, ...], categories: tuple[tuple[str, ...], ...]
) -> np.ndarray:
    shape = tuple(len(c) + 1 for c in categories)
    inner = tuple(len(c) for c in categories)
    out = np.zeros(shape, dtype=np.int64)
    if frame.height == 0:
        return out
    ids, cell = _encoded(frame, person, dims, categories)
    if ids.size == 0:
        return out
    pairs = pl.DataFrame({"p": ids, "c": cell}).unique()
    p = pairs.get_column("p").to_numpy()
    c = pairs.get_column("c").to_numpy()
    people = int(pl.Series(p).n_unique())
    if not dims:
        out[()] = people
        return out
    finest = np.bincount(c, minlength=int(np.prod(inner))).reshape(inner)
    out[tuple(slice(0, n) for n in inner)] = finest
    if p.size == people:
        # Every person falls in exactly one finest cell, so each margin is an exact sum.
        _fill_margins_by_sum(out)
        return out
    digits = []
    rest = c
    for n in reversed(inner):
        digits.append(rest % n)
        rest = rest // n
    digits.reverse()
    for r in range(1, len(dims)):
        for subset in itertools.combinations(range(len(dims)), r):
            sub_shape = tuple(inner[i] for i in subset)
            code = np.zeros(c.size, dtype=np.int64)
            for i in subset:
                code = code * inner[i] + digits[i]
            distinct = pl.DataFrame({"p": p, "c": code}).unique().get_column("c").to_numpy()
            counts = np.bincount(distinct, minlength=int(np.prod(sub_shape))).reshape(sub_shape)
            index = tuple(slice(0, inner[i]) if i in subset else inner[i] for i in range(len(dims)))
            out[index] = counts
    out[tuple(inner)] = people
    return out


def build_cube(
    numerator: pl.DataFrame,
    denominator: pl.DataFrame | None,
    person: str,
    dimensions: tuple[str, ...],
    categories: tuple[tuple[str, ...], ...],
) -> Cube:
    """Count distinct ``person`` per cell and margin. Dimension values outside ``categories``
    (the public values the agreement declares) are dropped, never added as new categories, and
    so are records without a person (no linkage token: they cannot be counted as a person)."""
    if len(dimensions) != len(categories):
        raise ValueError("one category list per dimension")
    return Cube(
        dimensions=dimensions,
        categories=categories,
        numerator=_distinct_counts(numerator, person, dimensions, categories),
        denominator=None
        if denominator is None
        else _distinct_counts(denominator, person, dimensions, categories),
    )
