"""A table of counts along dimensions, with every margin (totals along each dimension and the
grand total), computed from person-level records by distinct person.

The cube is a dense numpy array with one extra index per dimension that holds the total along it
(``TOTAL``), so a 2-dimensional table of 40 neighborhoods by 5 years has shape (41, 6).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import polars as pl

TOTAL = "_T"


@dataclass(frozen=True)
class Cube:
    dimensions: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]  # per dimension, excluding the total
    numerator: np.ndarray
    denominator: np.ndarray | None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) + 1 for c in self.categories)

    def coordinates(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(n) for n in self.shape)))

    def labels(self, index: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(
            TOTAL if i == len(cats) else cats[i]
            for i, cats in zip(index, self.categories, strict=True)
        )


def _distinct_counts(
    frame: pl.DataFrame, person: str, dims: tuple[str, ...], categories: tuple[tuple[str, ...], ...]
) -> np.ndarray:
    shape = tuple(len(c) + 1 for c in categories)
    out = np.zeros(shape, dtype=np.int64)
    if frame.height == 0:
        return out
    lookups = [{v: i for i, v in enumerate(cats)} for cats in categories]
    # Every subset of dimensions is one group-by; the omitted dimensions sit at their total index.
    for r in range(len(dims) + 1):
        for subset in itertools.combinations(range(len(dims)), r):
            names = [dims[i] for i in subset]
            if names:
                grouped = frame.group_by(names).agg(pl.col(person).n_unique().alias("n"))
                rows = grouped.iter_rows()
            else:
                rows = iter([(frame.get_column(person).n_unique(),)])
            for row in rows:
                idx = [len(c) for c in categories]
                ok = True
                for pos, dim_index in enumerate(subset):
                    j = lookups[dim_index].get(row[pos])
                    if j is None:
                        ok = False
                        break
                    idx[dim_index] = j
                if ok:
                    out[tuple(idx)] = row[-1]
    return out


def build_cube(
    numerator: pl.DataFrame,
    denominator: pl.DataFrame | None,
    person: str,
    dimensions: tuple[str, ...],
    categories: tuple[tuple[str, ...], ...],
) -> Cube:
    """Count distinct ``person`` per cell and margin. Dimension values outside ``categories``
    (the public values the agreement declares) are dropped, never added as new categories."""
    casted = [pl.col(d).cast(pl.String) for d in dimensions]
    num = numerator.select(pl.col(person), *casted) if dimensions else numerator.select(person)
    den = None
    if denominator is not None:
        den = (
            denominator.select(pl.col(person), *casted)
            if dimensions
            else denominator.select(person)
        )
    for d, cats in zip(dimensions, categories, strict=True):
        num = num.filter(pl.col(d).is_in(list(cats)))
        if den is not None:
            den = den.filter(pl.col(d).is_in(list(cats)))
    return Cube(
        dimensions=dimensions,
        categories=categories,
        numerator=_distinct_counts(num, person, dimensions, categories),
        denominator=None if den is None else _distinct_counts(den, person, dimensions, categories),
    )
