"""Random populations and random sequences of releases over them, run through the pure joint
audit (disclosure.joint) the way the service runs it, for the independent attacker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from aggregation.stored import published_table, release_cells, release_parameters
from disclosure.joint import (
    PERSON,
    SUBMISSION,
    Earlier,
    Obligations,
    Population,
    Shape,
    protect_in_population,
)
from tests.disclosure.independent import Shown

CATEGORIES: dict[str, tuple[str, ...]] = {
    "period": ("p0", "p1", "p2"),
    "area": ("a0", "a1", "a2", "a3"),
    "group": ("g0", "g1", "g2"),
    "flag": ("true", "false"),
    "band": ("low", "mid", "high"),
}
IMPOSSIBLE = ({"period": "p2", "group": "g2"},)
STRUCTURAL = ((("group", "g2"), ("period", "p2")),)


def people(rng: np.random.Generator, size: int, submissions: int = 3) -> pl.DataFrame:
    """One record per person, skewed so that small cells are common."""
    period = rng.choice(3, size=size)
    area = rng.choice(4, size=size, p=[0.5, 0.3, 0.15, 0.05])
    group = rng.choice(3, size=size, p=[0.6, 0.3, 0.1])
    group = np.where((period == 2) & (group == 2), 0, group)  # the structural zero
    flag = rng.random(size) < np.where(group == 1, 0.3, 0.7)
    band = rng.choice(3, size=size, p=[0.2, 0.5, 0.3])
    return pl.DataFrame(
        {
            "person": np.arange(size, dtype=np.uint64) * 7919 + 13,
            "submission": [f"s{p % submissions}" for p in period],
            "period": [CATEGORIES["period"][i] for i in period],
            "area": [CATEGORIES["area"][i] for i in area],
            "group": [CATEGORIES["group"][i] for i in group],
            "flag": ["true" if f else "false" for f in flag],
            "band": [CATEGORIES["band"][i] for i in band],
        }
    )


def random_shape(rng: np.random.Generator) -> tuple[Shape, str]:
    dims_pool = ["period", "area", "group", "band"]
    count = int(rng.choice([1, 2, 2, 2, 3]))
    dims = tuple(sorted(rng.choice(dims_pool, size=count, replace=False).tolist()))
    rate = bool(rng.random() < 0.6)
    free = [a for a in CATEGORIES if a not in dims]
    population: dict[str, str] = {}
    if free and rng.random() < 0.3:
        name = str(rng.choice(free))
        population[name] = str(rng.choice(CATEGORIES[name]))
    numerator = dict(population)
    if rate:
        outcomes = [a for a in ("flag", "band") if a not in dims and a not in population]
        if not outcomes:
            rate = False
        else:
            name = str(rng.choice(outcomes))
            numerator[name] = "true" if name == "flag" else str(rng.choice(CATEGORIES[name]))
    shape = Shape(
        dataset="survey",
        dims=dims,
        categories=tuple(CATEGORIES[d] for d in dims),
        numerator=numerator,
        denominator=dict(population) if rate else None,
    )
    return shape, "percent" if rate else "count"


@dataclass
class History:
    records: pl.DataFrame
    k: int
    earlier: list[Earlier] = field(default_factory=list)
    shown: list[Shown] = field(default_factory=list)

    def release(
        self, shape: Shape, unit: str, scope: Sequence[str] | None = None, rounding: str = "none"
    ) -> None:
        if scope is None:
            scope = self.records.get_column("submission").unique().to_list()
        current = frozenset(scope)
        # Withdrawn submissions keep their records until they are destroyed: the audit counts
        # them as the data versions of the earlier releases.
        available = current.union(*(e.scope for e in self.earlier))
        rows = self.records.filter(pl.col("submission").is_in(list(available)))
        frame = rows.select(
            pl.col("person").alias(PERSON),
            pl.col("submission").alias(SUBMISSION),
            *(pl.col(a) for a in CATEGORIES),
        )
        population = Population(frame, CATEGORIES, STRUCTURAL)
        joint = protect_in_population(
            population, shape, self.earlier, Obligations(self.k, rounding=rounding), unit, current
        )
        # Stored and read back as the service does.
        cells = release_cells(joint.protection)
        self.last = joint
        self.earlier.append(
            Earlier(
                shape=shape,
                scope=current,
                published=published_table(
                    shape.dims,
                    shape.categories,
                    cells,
                    release_parameters(joint.protection),
                    rate=shape.denominator is not None,
                ),
                x=joint.x.ravel(),
                n=None if joint.n is None else joint.n.ravel(),
                limits=joint.protection.proof.limits(),
            )
        )
        self.shown.append(
            Shown(
                shape.dims,
                shape.categories,
                shape.numerator,
                shape.denominator,
                current,
                self.k,
                cells,
                rounding,
            )
        )
