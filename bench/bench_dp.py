"""Differential privacy benchmark: the full release path against OpenDP alone, same frame, same run.

The frame: 1,000,000 person-level records (32-byte binary linkage tokens, about 5% of people with
a second record in another year) along 3 dimensions, 30 x 6 x 6 = 1,080 finest cells, 1,519 with
margins; the indicator is a rate (numerator flag on each record), the heavier of the two kinds.

(a) OpenDP alone: the minimal code producing the same noisy finest cells with an OpenDP polars
    Context: the person-local preparation OpenDP cannot express (64-bit identifier from the token,
    records outside the categories dropped, one row per person and cell), then
    ``context.query().truncate_per_group(...).group_by(...).agg(dp.len(...)).with_keys(...)
    .release().collect()``. Also shown: OpenDP executing an already-built measurement (no scale
    search), the strictest baseline.
(b) Backbone: ``disclosure.dp.plan`` + ``disclosure.dp.release`` (OpenDP, margins, exact 95%
    intervals, post-processing, reliability, cells).

The figure is the ratio (b)/(a); target at most 1.5. ``--strategies`` also compares, on the demo
kindergarten readiness table, measuring the finest cells only (margins by summation, what
``disclosure.dp`` does) against measuring every grouping with the budget split between them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import opendp.prelude as dp
import polars as pl
from opendp.extras.polars import dp_len

from disclosure import dp as dprel
from disclosure.dp_accuracy import half_width

dp.enable_features("contrib")

DIMS = ("neighborhood", "school_year", "race")
EPSILON = 1.0
MAX_CONTRIBUTIONS = 1


def _categories() -> tuple[tuple[str, ...], ...]:
    return (
        tuple(f"Neighborhood {i:02d}" for i in range(30)),
        tuple(f"{2020 + i}-{(21 + i) % 100:02d}" for i in range(6)),
        tuple(f"Group {chr(65 + i)}" for i in range(6)),
    )


def make_frame(rows: int, seed: int = 7) -> pl.DataFrame:
    """Person-level records: a token, three dimensions (0.5% outside the categories) and a flag."""
    rng = np.random.default_rng(seed)
    people = int(rows / 1.05)
    raw = os.urandom(32 * people)
    tokens = [raw[i * 32 : (i + 1) * 32] for i in range(people)]
    extra = rng.integers(0, people, rows - people)
    person = np.concatenate([np.arange(people), extra])
    cats = _categories()
    weights = rng.lognormal(0.0, 0.9, len(cats[0]))
    hood = rng.choice(len(cats[0]), rows, p=weights / weights.sum())
    year = rng.integers(0, len(cats[1]), rows)
    race = rng.choice(len(cats[2]), rows, p=[0.34, 0.30, 0.22, 0.07, 0.05, 0.02])
    race_labels = np.array([*cats[2], "Unknown"], dtype=object)
    race = np.where(rng.random(rows) < 0.005, len(cats[2]), race)
    return pl.DataFrame(
        {
            "student_token": pl.Series([tokens[i] for i in person], dtype=pl.Binary),
            "neighborhood": np.array(cats[0], dtype=object)[hood],
            "school_year": np.array(cats[1], dtype=object)[year],
            "race": race_labels[race],
            "ready": rng.random(rows) < 0.55,
        }
    )


def _domain() -> Any:
    return dp.lazyframe_domain(
        [dp.series_domain("pid", dp.atom_domain(T="u64"))]
        + [dp.series_domain(d, dp.atom_domain(T="String")) for d in DIMS]
        + [dp.series_domain("flag", dp.atom_domain(T="bool"))]
    )


def _context(data: pl.LazyFrame) -> Any:
    return dp.Context.compositor(
        data=data,
        privacy_unit=dp.unit_of(contributions=1, identifier="pid"),
        privacy_loss=dp.loss_of(epsilon=EPSILON),
        split_evenly_over=1,
        domain=_domain(),
    )


def _query(context: Any) -> Any:
    keys = pl.DataFrame(
        list(itertools.product(*_categories(), [False, True])),
        schema=[*DIMS, "flag"],
        orient="row",
    )
    return (
        context.query()
        .truncate_per_group(MAX_CONTRIBUTIONS, keep="first")
        .group_by(*DIMS, "flag")
        .agg(dp_len(signed=True))
        .with_keys(keys)
    )


def built_measurement() -> Any:
    """The baseline query resolved once, on no data (for the strictest baseline)."""
    schema = {"pid": pl.UInt64, **dict.fromkeys(DIMS, pl.String), "flag": pl.Boolean}
    return _query(_context(pl.LazyFrame(schema=schema))).resolve()


def opendp_alone(frame: pl.DataFrame, resolved: Any | None = None) -> pl.DataFrame:
    """The minimal OpenDP path to the same noisy finest cells (see the module docstring)."""
    cats = _categories()
    prepared = (
        frame.lazy()
        .select(
            pl.col("student_token").hash().alias("pid"),
            *DIMS,
            pl.col("ready").alias("flag"),
        )
        .filter(*(pl.col(d).is_in(list(c)) for d, c in zip(DIMS, cats, strict=True)))
        .group_by(["pid", *DIMS])
        .agg(pl.col("flag").any())
        .collect()
    )
    context = _context(prepared.lazy())
    if resolved is not None:
        return context(resolved).collect()  # type: ignore[no-any-return]
    return _query(context).release().collect()  # type: ignore[no-any-return]


def backbone(frame: pl.DataFrame) -> dprel.DpResult:
    p = dprel.plan(DIMS, _categories(), "percent", EPSILON, MAX_CONTRIBUTIONS)
    return dprel.release(frame, p, person="student_token", numerator=pl.col("ready"))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _strategy_table(dims: tuple[str, ...]) -> None:
    from demo.generator import generate
    from demo.initiative import NEIGHBORHOODS, RACE_ETHNICITY
    from disclosure.cube import build_cube

    k = generate().kindergarten_readiness
    known = {
        "school_year": tuple(sorted(k.get_column("school_year").unique().to_list())),
        "neighborhood": tuple(NEIGHBORHOODS),
        "race_ethnicity": tuple(RACE_ETHNICITY),
    }
    cats = tuple(known[d] for d in dims)
    cube = build_cube(k.filter(pl.col("ready")), k, "student_id", dims, cats)
    assert cube.denominator is not None
    num, den = cube.numerator, cube.denominator
    finest = tuple(len(c) for c in cats)
    m = np.ones(finest, dtype=np.int64)
    for axis in range(len(dims)):
        m = np.concatenate([m, m.sum(axis=axis, keepdims=True)], axis=axis)
    is_finest = m == 1
    rel = dprel.Reliability()
    groupings = 2 ** len(dims)
    strategies = {
        "finest cells measured, margins summed (chosen)": (MAX_CONTRIBUTIONS / EPSILON, m),
        f"each of the {groupings} groupings measured with epsilon/{groupings}": (
            MAX_CONTRIBUTIONS * groupings / EPSILON,
            np.ones_like(m),
        ),
    }
    print(f"{' x '.join(dims)}: {'x'.join(map(str, finest))} cells, {m.size} with margins")
    for name, (scale, terms) in strategies.items():
        low = np.zeros(m.shape, dtype=bool)
        widths = np.zeros(m.shape)
        for index in np.ndindex(m.shape):
            n, d = int(num[index]), int(den[index])
            c = d - n
            t = half_width(int(terms[index]), scale, 0.025)
            td = half_width(2 * int(terms[index]), scale, 0.05)
            lo = max(n - t, 0) / max(max(n - t, 0) + c + t, 1)
            hi = (n + t) / max(n + t + max(c - t, 0), 1) if n + t + max(c - t, 0) else 1.0
            widths[index] = hi - lo
            low[index] = (
                d == 0
                or td > rel.max_relative_half_width * d
                or hi - lo > rel.max_rate_interval_width
            )
        print(
            f"  {name}: low reliability in {low[is_finest].mean():.0%} of cells and "
            f"{low[~is_finest].mean():.0%} of margins; median 95% interval width "
            f"{100 * np.median(widths[is_finest]):.1f} pp (cells), "
            f"{100 * np.median(widths[~is_finest]):.1f} pp (margins)"
        )


def compare_strategies() -> None:
    """Expected reliability of the demo kindergarten readiness rate at epsilon 1 (computed from
    the true counts, noise-free) for the two ways of getting margins."""
    print("margin strategies, demo kindergarten readiness rate, epsilon 1:")
    _strategy_table(("school_year", "neighborhood"))
    _strategy_table(("school_year", "neighborhood", "race_ethnicity"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, one repetition")
    parser.add_argument("--strategies", action="store_true")
    args = parser.parse_args(argv)
    rows, repeat = (100_000, 1) if args.quick else (args.rows, args.repeat)

    frame = make_frame(rows)
    cells = len(list(itertools.product(*(range(len(c) + 1) for c in _categories()))))
    print(f"frame: {frame.height:,} records, {cells:,} cells with margins, rate, epsilon {EPSILON}")
    resolved = built_measurement()
    # Warm up every path once (imports, plugin loading, polars thread pool).
    opendp_alone(frame)
    opendp_alone(frame, resolved)
    backbone(frame)
    alone, executed, ours = [], [], []
    for _ in range(repeat):
        alone.append(_timed(lambda: opendp_alone(frame)))
        executed.append(_timed(lambda: opendp_alone(frame, resolved)))
        ours.append(_timed(lambda: backbone(frame)))
    a, e, b = (statistics.median(x) for x in (alone, executed, ours))
    print(f"(a) OpenDP alone, Context query and release:     {a:7.3f} s")
    print(f"    OpenDP alone, executing a built measurement: {e:7.3f} s")
    print(f"(b) Backbone plan + release (cells, intervals):  {b:7.3f} s")
    print(
        f"ratio (b)/(a): {b / a:.2f}  (target <= 1.5); against the built measurement: {b / e:.2f}"
    )
    if args.strategies:
        compare_strategies()
    return 0 if b / a <= 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
