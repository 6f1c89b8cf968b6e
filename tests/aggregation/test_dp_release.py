"""Differentially private releases: keys, contribution bounds, accounting, intervals, invariants."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import opendp.prelude as dp
import polars as pl
import pytest
from scipy.stats import binom

from core.errors import DomainError, InvalidInput
from disclosure import dp as dprel
from disclosure.cube import TOTAL, build_cube
from disclosure.dp_accuracy import half_width, tail

HOODS = ("Ashland", "Bayview", "Central")
YEARS = ("2023-24", "2024-25")
# Epsilon so large that the discrete Laplace noise is zero: the scale is at most 5e-9, so a draw is
# nonzero with probability 2q/(1 + q), q = exp(-1/scale) < exp(-2e8), i.e. never.
NO_NOISE = 1e9
# Tests that assert on OpenDP's own random noise state their false-failure probability, derived
# from the noise distribution, and keep it below this; every other test either holds for any draw
# of noise or injects its noise through ``release(noise=...)`` and asserts exactly.
FALSE_FAILURE = 1e-6


def token(i: int) -> bytes:
    return hashlib.sha256(f"person-{i}".encode()).digest()


def frame(rows: Sequence[tuple[int, str | None, str | None, bool]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "tok": [token(r[0]) for r in rows],
            "hood": [r[1] for r in rows],
            "year": [r[2] for r in rows],
            "ready": [r[3] for r in rows],
        },
        schema={"tok": pl.Binary, "hood": pl.String, "year": pl.String, "ready": pl.Boolean},
    )


def random_frame(n: int, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return frame(
        [
            (i, HOODS[rng.integers(0, 3)], YEARS[rng.integers(0, 2)], bool(rng.random() < 0.4))
            for i in range(n)
        ]
    )


def laplace_noise(shape: tuple[int, ...], scale: float, seed: int) -> np.ndarray:
    """Seeded discrete Laplace draws (P(x) proportional to exp(-|x| / scale)) as the difference of
    two geometric counts of failures, to inject through ``release(noise=...)``."""
    rng = np.random.default_rng(seed)
    success = -math.expm1(-1.0 / scale)
    return (rng.geometric(success, shape) - rng.geometric(success, shape)).astype(np.int64)


def laplace_pmf(x: int, scale: float) -> float:
    q = math.exp(-1.0 / scale)
    return (1 - q) / (1 + q) * q ** abs(x)


def covering_bounds(n: int, p: float, alpha: float) -> tuple[int, int]:
    """Bounds a Binomial(n, p) count falls outside with probability at most ``alpha`` on each
    side: P(X < lo) < alpha (lo is the alpha-quantile) and P(X > hi) <= alpha."""
    return int(binom.ppf(alpha, n, p)), int(binom.isf(alpha, n, p))


def plan(unit: str = "percent", epsilon: float = NO_NOISE, k: int = 1, **kw: Any) -> dprel.DpPlan:
    return dprel.plan(("hood", "year"), (HOODS, YEARS), unit, epsilon, k, **kw)


def cell(cells: list[dict[str, Any]], hood: str, year: str) -> dict[str, Any]:
    return next(c for c in cells if c["hood"] == hood and c["year"] == year)


# --- group keys come from the agreement, never from the data ------------------------------------


def test_keys_come_from_the_categories_not_the_data() -> None:
    data = frame(
        [
            (1, "Ashland", "2023-24", True),
            (2, "Ashland", "2023-24", False),
            (3, "Bayview", "2024-25", True),
            (4, "Nowhere", "2023-24", True),  # not a public category: dropped
            (5, None, "2024-25", True),  # missing value: dropped
            (6, "Ashland", "1999-00", True),  # unknown year: dropped
        ]
    )
    for unit in ("count", "percent"):
        result = dprel.release(data, plan(unit), person="tok", numerator=pl.col("ready"))
        labels = {(c["hood"], c["year"]) for c in result.cells}
        expected = set(itertools.product((*HOODS, TOTAL), (*YEARS, TOTAL)))
        assert labels == expected  # Central never occurs in the data, yet has its cells
        assert not any(
            "Nowhere" in str(c.values()) or "1999-00" in str(c.values()) for c in result.cells
        )
        total = cell(result.cells, TOTAL, TOTAL)
        if unit == "count":
            assert total["numerator"] == 2  # persons 1 and 3 (ready, in the categories)
        else:
            assert (total["numerator"], total["denominator"]) == (2, 3)
            assert cell(result.cells, "Ashland", "2023-24")["value"] == 50.0


def _all_equal_probability(draws: int, scale: float, t: int) -> float:
    """P(``draws`` independent values of max(X + t, 0) are all equal), X discrete Laplace(scale):
    the sum over v of P(max(X + t, 0) = v) ** draws (terms past v = t + 60 scales are < 1e-20)."""
    q = math.exp(-1.0 / scale)
    at_zero = q**t / (1 + q)  # P(X <= -t)
    rest = (laplace_pmf(v - t, scale) for v in range(1, t + int(60 * scale) + 1))
    return at_zero**draws + sum(x**draws for x in rest)


def test_absent_category_gets_a_noisy_value() -> None:
    data = frame([(i, "Ashland", "2023-24", True) for i in range(50)])
    p = plan("count", epsilon=0.5)
    t = half_width(1, p.scale, 0.05)
    # OpenDP's own noise: the raw noisy count behind "Central" varies (so does its interval); it is
    # not a fixed zero. Its published upper bound is max(X + t, 0), X discrete Laplace(scale 2),
    # independent over releases; 12 of them are all equal with probability sum_v P(v)^12 < 5e-8.
    draws = 12
    assert _all_equal_probability(draws, p.scale, t) < FALSE_FAILURE
    seen = {
        cell(dprel.release(data, p, person="tok").cells, "Central", "2024-25")["upper"]
        for _ in range(draws)
    }
    assert len(seen) > 1
    # Exactly, with injected noise: the absent cell publishes its noise, clipped at zero.
    for drawn, expected in ((7, (7, 7 - t, 7 + t)), (-2, (0, 0, 4)), (-9, (0, 0, 0))):
        noise = np.zeros((len(HOODS), len(YEARS)), dtype=np.int64)
        noise[2, 1] = drawn
        cells = dprel.release(data, p, person="tok", noise=noise).cells
        c = cell(cells, "Central", "2024-25")
        assert (c["numerator"], c["lower"], c["upper"]) == expected
        assert cell(cells, TOTAL, TOTAL)["numerator"] == 50 + drawn


# --- contribution bounding and the privacy loss --------------------------------------------------


@pytest.mark.parametrize("unit", ["count", "percent"])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_privacy_map_is_the_planned_loss_and_scales_with_contributions(unit: str, k: int) -> None:
    p = plan(unit, epsilon=0.8, k=k)
    # The loss for one person is what OpenDP's privacy map reports for the measurement...
    assert p.measurement.map(1) == p.epsilon
    assert p.epsilon <= 0.8
    assert p.epsilon == pytest.approx(0.8, rel=1e-12)
    # ...its sensitivity is the contribution bound: a person moves at most k cells by one...
    assert p.epsilon * p.scale == pytest.approx(k, rel=1e-12)
    # ...and two people cost twice as much (group privacy), so the unit really is one identifier.
    assert p.measurement.map(2) == pytest.approx(2 * p.epsilon, rel=1e-12)
    assert p.delta == 0.0


@pytest.mark.parametrize("epsilon", [1.0, 1 / 3, 0.7, 0.1, 2.5, 1e-3])
def test_planned_loss_never_exceeds_the_release_budget(epsilon: float) -> None:
    p = plan("percent", epsilon=epsilon, k=3)
    assert p.measurement.map(1) == p.epsilon <= epsilon
    assert p.epsilon == pytest.approx(epsilon, rel=1e-12)


def test_plan_is_deterministic() -> None:
    a, b = plan("percent", epsilon=0.37, k=2), plan("percent", epsilon=0.37, k=2)
    assert (a.epsilon, a.scale, a.parameters()) == (b.epsilon, b.scale, b.parameters())
    assert a == b  # the OpenDP objects are excluded from the comparison


def test_a_person_with_many_records_moves_the_table_by_at_most_the_bound() -> None:
    base = random_frame(300)
    heavy = frame(
        [(10_000, hood, year, True) for hood in HOODS for year in YEARS for _ in range(4)]
    )
    for k in (1, 2):
        p = plan("count", k=k)
        without = dprel.release(base, p, person="tok").cube.numerator
        for _ in range(5):
            with_ = dprel.release(pl.concat([base, heavy]), p, person="tok").cube.numerator
            finest = (with_ - without)[: len(HOODS), : len(YEARS)]
            assert finest.min() >= 0
            assert finest.sum() == k  # k of the person's 6 cells, whichever truncation kept


def repeat_frame(rows: int, people: int, seed: int) -> pl.DataFrame:
    """People with several records each, in several cells, some outside the categories."""
    rng = np.random.default_rng(seed)
    hoods = (*HOODS, "Nowhere", None)
    return frame(
        [
            (
                int(rng.integers(0, people)),
                hoods[rng.choice(5, p=[0.3, 0.3, 0.3, 0.05, 0.05])],
                YEARS[rng.integers(0, 2)],
                bool(rng.random() < 0.4),
            )
            for _ in range(rows)
        ]
    )


@pytest.mark.parametrize("unit", ["count", "percent"])
@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_one_person_moves_the_exact_counts_by_at_most_the_sensitivity(unit: str, k: int) -> None:
    # The sensitivity the noise is calibrated to (OpenDP's discrete Laplace over the vector of
    # finest counts, at d_in = max_contributions in L1): adding one person, with several records
    # in every cell, in and out of the numerator, moves the exact finest counts (the numerator
    # flag's axis included) by one in at most k entries; every margin, a sum of finest cells,
    # moves by at most k too (margins are computed from the noisy cells, never measured).
    # Everyone else has two identical records (one cell), so their rows are the same either way:
    # a person's truncation depends only on their own rows and their own random draws.
    base = pl.concat([random_frame(300), random_frame(300)])
    heavy = frame(
        [
            (10_000, hood, year, (h + y + r) % 3 == 0)
            for h, hood in enumerate(HOODS)
            for y, year in enumerate(YEARS)
            for r in range(3)
        ]
        + [(10_000, "Nowhere", "2023-24", True)]
    )
    p = plan(unit, k=k)
    numerator = pl.col("ready") if unit == "percent" else None
    without = dprel._exact_counts(base, p, "tok", numerator)
    for seed in range(20):
        mixed = pl.concat([base, heavy]).sample(fraction=1.0, shuffle=True, seed=seed)
        diff = dprel._exact_counts(mixed, p, "tok", numerator) - without
        assert diff.min() >= 0 and diff.max() <= 1
        assert np.abs(diff).sum() == min(k, len(HOODS) * len(YEARS)) <= p.max_contributions
        finest = diff.sum(axis=-1) if unit == "percent" else diff
        for axis in range(finest.ndim):
            assert finest.sum(axis=axis).max() <= k
    # The loss is what OpenDP's maps give at that sensitivity, for the person-level query and
    # for the noise that is drawn, and the plan's budget holds for both.
    assert p.mechanism.map(k) <= p.epsilon and p.measurement.map(1) <= p.epsilon


def _opendp_polars_counts(data: pl.DataFrame, p: dprel.DpPlan) -> np.ndarray:
    """The finest counts of OpenDP's own polars measurement (``p.measurement``: truncation per
    person and grouping with the public keys), run on the data reduced to one row per person and
    cell as the release did before it computed the counts itself."""
    rate = p.kind == "rate"
    person = dprel._PERSON
    reduced = (
        data.select(
            pl.col("tok").hash().alias(person),
            *(
                pl.col(d).cast(pl.Enum(list(c)), strict=False)
                for d, c in zip(p.dimensions, p.categories, strict=True)
            ),
            pl.col("ready").alias(dprel._FLAG),
        )
        .drop_nulls(list(p.dimensions))
        .group_by(person, *p.dimensions)
        .agg(pl.col(dprel._FLAG).any())
        .sample(fraction=1.0, shuffle=True, seed=1)
    )
    if not rate:
        reduced = reduced.drop(dprel._FLAG)
    context = dp.Context.compositor(
        data=reduced.lazy(),
        privacy_unit=dp.unit_of(contributions=1, identifier=person),
        privacy_loss=dp.loss_of(epsilon=p.epsilon),
        split_evenly_over=1,
        domain=p.domain,
    )
    out = context(p.measurement).collect()
    shape = tuple(len(c) for c in p.categories) + ((2,) if rate else ())
    counts = np.zeros(shape, dtype=np.int64)
    for row in out.iter_rows(named=True):
        index = [p.categories[i].index(row[d]) for i, d in enumerate(p.dimensions)]
        if rate:
            index.append(int(row[dprel._FLAG]))
        counts[tuple(index)] = row[dprel._COUNT]
    return counts


@pytest.mark.parametrize("unit", ["count", "percent"])
@pytest.mark.parametrize("k", [1, 2, 6])
def test_exact_counts_are_those_of_opendps_polars_measurement(unit: str, k: int) -> None:
    # Without noise (epsilon 1e9), the counts the release computes itself equal those of the
    # OpenDP polars measurement it replaced. With k = 6 no one has more cells than the bound, so
    # every count is equal; below it, truncation keeps a random choice of cells per person, and
    # the total (each person counted in min(cells, k) cells) is equal.
    data = repeat_frame(600, 200, seed=11)
    p = plan(unit, k=k)
    mine = dprel._exact_counts(data, p, "tok", pl.col("ready") if unit == "percent" else None)
    theirs = _opendp_polars_counts(data, p)
    assert mine.shape == theirs.shape
    assert mine.sum() == theirs.sum()
    if k == 6:
        assert np.array_equal(mine, theirs)
    # People numbered 0, 1, 2...: without its low bits the identifier no longer tells them apart,
    # so the keys number people densely instead (the slower path); the counts are the same.
    numbered = data.with_columns(pl.col("tok").rank("dense").cast(pl.UInt64))
    again = dprel._exact_counts(numbered, p, "tok", pl.col("ready") if unit == "percent" else None)
    assert again.sum() == mine.sum()
    if k == 6:
        assert np.array_equal(again, mine)


def test_truncation_keeps_a_random_choice_of_a_persons_cells() -> None:
    # One person in all 6 cells, bound 1: each run keeps one cell, chosen uniformly; in 150 runs
    # some cell is never kept with probability at most 6 * (5/6)^150 < 2e-11.
    data = frame([(1, hood, year, True) for hood in HOODS for year in YEARS])
    assert FALSE_FAILURE > 6 * (5 / 6) ** 150
    p = plan("count", k=1)
    kept = set()
    for _ in range(150):
        counts = dprel._exact_counts(data, p, "tok", None)
        assert counts.sum() == 1
        kept.add(tuple(np.argwhere(counts)[0]))
    assert len(kept) == len(HOODS) * len(YEARS)


def test_truncation_keeps_every_choice_equally_often() -> None:
    # One person in 4 cells, bound 2: each of the 6 pairs of cells is kept with probability 1/6;
    # in 1,200 runs each pair's count lies within Binomial(1200, 1/6) bounds that fail with
    # probability below FALSE_FAILURE / 6 on each side (so below FALSE_FAILURE in all).
    cells = [("Ashland", "2023-24"), ("Bayview", "2023-24"), ("Central", "2024-25")]
    cells.append(("Ashland", "2024-25"))
    data = frame([(1, hood, year, True) for hood, year in cells for _ in range(2)])
    p = plan("count", k=2)
    runs = 1200
    lo, hi = covering_bounds(runs, 1 / 6, FALSE_FAILURE / 12)
    seen: dict[tuple[tuple[int, ...], ...], int] = {}
    for _ in range(runs):
        counts = dprel._exact_counts(data, p, "tok", None)
        assert counts.sum() == 2 and counts.max() == 1
        pair = tuple(tuple(int(i) for i in c) for c in np.argwhere(counts))
        seen[pair] = seen.get(pair, 0) + 1
    assert len(seen) == 6
    assert all(lo <= n <= hi for n in seen.values())


def test_people_are_counted_once_per_cell() -> None:
    data = frame(
        [
            (1, "Ashland", "2023-24", False),
            (1, "Ashland", "2023-24", True),  # same person, same cell: in the numerator once
            (2, "Ashland", "2023-24", False),
            (2, "Ashland", "2023-24", False),
        ]
    )
    result = dprel.release(data, plan("percent"), person="tok", numerator=pl.col("ready"))
    c = cell(result.cells, "Ashland", "2023-24")
    assert (c["numerator"], c["denominator"], c["value"]) == (1, 2, 50.0)


def test_matches_the_suppression_cube_without_noise() -> None:
    data = random_frame(400)
    result = dprel.release(data, plan("percent"), person="tok", numerator=pl.col("ready"))
    cube = build_cube(data.filter(pl.col("ready")), data, "tok", ("hood", "year"), (HOODS, YEARS))
    assert np.array_equal(result.cube.numerator, cube.numerator)
    assert result.cube.denominator is not None and cube.denominator is not None
    assert np.array_equal(result.cube.denominator, cube.denominator)
    assert [(c["hood"], c["year"]) for c in result.cells] == [
        cube.labels(i) for i in cube.coordinates()
    ]


def test_cohort_filtering_on_the_given_frame() -> None:
    # A cross-partner indicator: the population is restricted, by linkage token, to people who
    # appear in another partner's dataset; the release counts exactly that cohort.
    population = random_frame(500, seed=8)
    prek = pl.DataFrame({"child": [token(i) for i in range(0, 500, 3)]})
    cohort = population.filter(pl.col("tok").is_in(prek.get_column("child").implode()))
    result = dprel.release(cohort, plan("percent"), person="tok", numerator=pl.col("ready"))
    expected = build_cube(
        cohort.filter(pl.col("ready")), cohort, "tok", ("hood", "year"), (HOODS, YEARS)
    )
    assert np.array_equal(result.cube.numerator, expected.numerator)
    assert cell(result.cells, TOTAL, TOTAL)["denominator"] == 167


# --- intervals -------------------------------------------------------------------------------


def _summed(index: tuple[int, ...], shape: tuple[int, ...]) -> int:
    """How many finest cells the cell at ``index`` sums (the last index of an axis is its total)."""
    return math.prod(n if i == n else 1 for i, n in zip(index, shape, strict=True))


def test_count_intervals_cover_about_95_percent() -> None:
    # OpenDP's own noise. Cells are grouped by the number m of finest cells they sum (200 finest
    # cells, 40 hood margins, 5 year margins, the total). In a group the noises of different cells
    # and releases are independent, and (every true count being positive) a cell is covered
    # exactly when |noise| <= t_m, so its hits are Binomial(N, c_m), c_m = 1 - tail(m, scale, t_m)
    # >= 95%. Each group's count lies within its binomial quantiles at FALSE_FAILURE / 8 per side,
    # so the test fails by chance with probability below 4 * 2 * FALSE_FAILURE / 8 = 1e-6.
    hoods = tuple(f"h{i}" for i in range(40))
    years = tuple(f"y{i}" for i in range(5))
    rng = np.random.default_rng(5)
    n = 4000
    data = pl.DataFrame(
        {
            "tok": [token(i) for i in range(n)],
            "hood": rng.choice(hoods, n),
            "year": rng.choice(years, n),
        }
    )
    truth = build_cube(data, None, "tok", ("hood", "year"), (hoods, years)).numerator
    assert truth.min() > 0
    p = dprel.plan(("hood", "year"), (hoods, years), "count", 1.0, 1)
    releases = 25
    hits: dict[int, int] = {}
    cells: dict[int, int] = {}
    for _ in range(releases):
        result = dprel.release(data, p, person="tok")
        for c, index in zip(result.cells, result.cube.coordinates(), strict=True):
            m = _summed(index, (len(hoods), len(years)))
            hits[m] = hits.get(m, 0) + (c["lower"] <= truth[index] <= c["upper"])
            cells[m] = cells.get(m, 0) + 1
    assert cells == {1: 200 * releases, 5: 40 * releases, 40: 5 * releases, 200: releases}
    for m, n_m in cells.items():
        coverage = 1.0 - tail(m, p.scale, half_width(m, p.scale, 0.05))
        assert 0.95 <= coverage < 0.975
        lo, hi = covering_bounds(n_m, coverage, FALSE_FAILURE / 8)
        assert lo <= hits[m] <= hi, (m, hits[m], n_m, coverage)


def test_rate_intervals_cover_at_least_95_percent() -> None:
    # OpenDP's own noise, grouped as for counts by the number m of finest cells summed (60 finest
    # cells, 30 hood margins, 2 year margins, the total). A cell's interval covers its rate
    # whenever both its numerator and its complement noise are within t_m (97.5% intervals),
    # independently with probability e_m = (1 - tail(m, scale, t_m))^2 >= 95% (Bonferroni); every
    # true complement exceeds t_m, so the noisy denominator is then positive. So a group's hits are
    # at least a Binomial(N, e_m) count and fall below its FALSE_FAILURE / 4 quantile with
    # probability below FALSE_FAILURE / 4: below 1e-6 over the four groups.
    hoods = tuple(f"h{i}" for i in range(30))
    rng = np.random.default_rng(6)
    n = 3000
    data = pl.DataFrame(
        {
            "tok": [token(i) for i in range(n)],
            "hood": rng.choice(hoods, n),
            "year": rng.choice(YEARS, n),
            "ready": rng.random(n) < 0.3,
        }
    )
    truth = build_cube(data.filter(pl.col("ready")), data, "tok", ("hood", "year"), (hoods, YEARS))
    assert truth.denominator is not None
    rate = 100 * truth.numerator / truth.denominator
    complement = truth.denominator - truth.numerator
    p = dprel.plan(("hood", "year"), (hoods, YEARS), "percent", 1.0, 1)
    shape = (len(hoods), len(YEARS))
    releases = 20
    hits: dict[int, int] = {}
    cells: dict[int, int] = {}
    for _ in range(releases):
        result = dprel.release(data, p, person="tok", numerator=pl.col("ready"))
        for c, index in zip(result.cells, result.cube.coordinates(), strict=True):
            m = _summed(index, shape)
            covered = c["value"] is not None and c["lower"] <= rate[index] <= c["upper"]
            hits[m] = hits.get(m, 0) + covered
            cells[m] = cells.get(m, 0) + 1
            assert complement[index] > half_width(m, p.scale, 0.025)
    assert cells == {1: 60 * releases, 2: 30 * releases, 30: 2 * releases, 60: releases}
    for m, n_m in cells.items():
        both = (1.0 - tail(m, p.scale, half_width(m, p.scale, 0.025))) ** 2
        assert both >= 0.95
        lo, _ = covering_bounds(n_m, both, FALSE_FAILURE / 4)
        assert hits[m] >= lo, (m, hits[m], n_m, both)


def test_interval_widths_follow_the_number_of_cells_summed() -> None:
    # Exact: seeded discrete Laplace noise injected into the finest cells.
    p = plan("count", epsilon=1.0)
    data = random_frame(2000)
    truth = build_cube(data, None, "tok", ("hood", "year"), (HOODS, YEARS)).numerator
    noise = laplace_noise((len(HOODS), len(YEARS)), p.scale, seed=11)
    noise[0, 0] = 2
    result = dprel.release(data, p, person="tok", noise=noise)
    raw = truth + np.pad(noise, ((0, 1), (0, 1)))
    raw[-1, :-1] = raw[:-1, :-1].sum(axis=0)
    raw[:-1, -1] = raw[:-1, :-1].sum(axis=1)
    raw[-1, -1] = raw[:-1, :-1].sum()
    for c, index in zip(result.cells, result.cube.coordinates(), strict=True):
        t = half_width(_summed(index, (len(HOODS), len(YEARS))), p.scale, 0.05)
        assert c["numerator"] == raw[index]
        assert (c["lower"], c["upper"]) == (raw[index] - t, raw[index] + t)
    inner = cell(result.cells, "Ashland", "2023-24")
    margin = cell(result.cells, TOTAL, TOTAL)
    assert inner["numerator"] == truth[0, 0] + 2
    assert inner["upper"] - inner["lower"] == 2 * 3  # one discrete Laplace(1) draw: +-3
    assert margin["upper"] - margin["lower"] == 2 * half_width(6, p.scale, 0.05) > 2 * 3


# --- post-processing ---------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["count", "percent", "rate_per_1000"])
def test_published_values_are_consistent(unit: str) -> None:
    data = random_frame(60, seed=4)  # small cells, strong noise: many raw counts are negative
    p = plan(unit, epsilon=0.05, k=2)
    top = dprel.UNIT_SCALE[unit]
    # These properties hold for any draw of noise: ten releases with OpenDP's own noise, then
    # injected draws (seeded), all-negative and all-large noise, so that every branch is
    # exercised whatever OpenDP drew.
    shape = (len(HOODS), len(YEARS)) + ((2,) if unit != "count" else ())
    injected = [laplace_noise(shape, p.scale, seed) for seed in range(3)]
    injected += [np.full(shape, v, dtype=np.int64) for v in (-1000, 1000)]
    statuses = set()
    for noise in [None] * 10 + injected:
        result = dprel.release(data, p, person="tok", numerator=pl.col("ready"), noise=noise)
        assert len(result.cells) == math.prod(p.shape)
        for c in result.cells:
            if noise is not None:
                statuses.add((c["status"], c["value"] is None, c["numerator"] == 0))
            assert c["status"] in (dprel.DP, dprel.LOW_RELIABILITY)
            assert isinstance(c["numerator"], int) and c["numerator"] >= 0
            if unit == "count":
                assert c["denominator"] is None
                assert c["value"] == float(c["numerator"])
            else:
                assert isinstance(c["denominator"], int)
                assert c["numerator"] <= c["denominator"]
                if c["denominator"] == 0:
                    assert c["value"] is None and c["status"] == dprel.LOW_RELIABILITY
                    continue
                assert 0.0 <= c["value"] <= top
                assert c["value"] == round(top * c["numerator"] / c["denominator"], 1)
            assert 0.0 <= c["lower"] <= c["value"] <= c["upper"]
            if unit != "count":
                assert c["upper"] <= top
    assert (dprel.LOW_RELIABILITY, unit != "count", True) in statuses  # all-negative noise
    assert (dprel.DP, False, False) in statuses  # all-large noise


def test_low_reliability_rule() -> None:
    data = frame(
        [(i, "Ashland", "2023-24", i % 2 == 0) for i in range(400)]
        + [(1000 + i, "Bayview", "2023-24", True) for i in range(3)]
    )
    p = plan("percent", epsilon=1.0)
    # The noisy denominator of a finest cell (numerator plus complement: two noisy counts).
    t_den = half_width(2, p.scale, 0.05)
    assert t_den == 4
    # Exact, with noise injected into Bayview's [complement, numerator] (3 children, all ready).
    # Ashland (200 of 400) gets no noise and stays reliable.
    for (complement, numerator), expected in [
        ((0, 0), (3, 3, 100.0, 0.0, 100.0, dprel.LOW_RELIABILITY)),  # few: t_den > 3 / 2
        ((-5, 0), (3, 3, 100.0, 0.0, 100.0, dprel.LOW_RELIABILITY)),
        ((-1, -3), (0, 0, None, None, None, dprel.LOW_RELIABILITY)),  # no denominator
        # A rare draw that makes them look many and certain: 43 of 43, reliable.
        ((0, 40), (43, 43, 100.0, 90.6, 100.0, dprel.DP)),
        # 10 of 15: the denominator passes (4 <= 7.5), the interval [40%, 93.4%] is too wide.
        ((5, 7), (10, 15, 66.7, 40.0, 93.4, dprel.LOW_RELIABILITY)),
        # 20 of 40: interval [40%, 60%], reliable.
        ((20, 17), (20, 40, 50.0, 40.0, 60.0, dprel.DP)),
    ]:
        noise = np.zeros((len(HOODS), len(YEARS), 2), dtype=np.int64)
        noise[1, 0] = (complement, numerator)
        result = dprel.release(data, p, person="tok", numerator=pl.col("ready"), noise=noise)
        assert cell(result.cells, "Ashland", "2023-24")["status"] == dprel.DP
        small = cell(result.cells, "Bayview", "2023-24")
        keys = ("numerator", "denominator", "value", "lower", "upper", "status")
        assert tuple(small[k] for k in keys) == expected
    # OpenDP's own noise: the denominator rule holds for any draw. Ashland (200 and 200) is
    # flagged only if one of its two noises reaches 150 in absolute value (otherwise its
    # denominator exceeds 100 > 2 t_den and its interval is 8 / denominator < 30 points wide):
    # P <= 3 releases * 2 draws * 2q^150 / (1 + q), q = exp(-1 / scale).
    q = math.exp(-1.0 / p.scale)
    assert 3 * 2 * 2 * q**150 / (1 + q) < FALSE_FAILURE
    for _ in range(3):
        result = dprel.release(data, p, person="tok", numerator=pl.col("ready"))
        assert cell(result.cells, "Ashland", "2023-24")["status"] == dprel.DP
        for c, index in zip(result.cells, result.cube.coordinates(), strict=True):
            t_den_m = half_width(2 * _summed(index, (len(HOODS), len(YEARS))), p.scale, 0.05)
            if c["denominator"] == 0 or t_den_m > 0.5 * c["denominator"]:
                assert c["status"] == dprel.LOW_RELIABILITY
    # Its count (400, t = 3) is flagged only if its noise is -395 or less: P = q^395 / (1 + q).
    counts = dprel.release(data, plan("count", epsilon=1.0), person="tok")
    assert q**395 / (1 + q) < FALSE_FAILURE
    assert cell(counts.cells, "Ashland", "2023-24")["status"] == dprel.DP
    # The count rule, recomputed cell by cell: flagged exactly when the 95% half-width of the sum
    # of m noisy cells exceeds half of the published count. It holds for any draw (OpenDP's
    # noise); the injected draws (seeded) must give both statuses.
    p = plan("count", epsilon=0.3)
    sample = random_frame(80, seed=9)
    statuses = set()
    for seed in range(6):
        noise = laplace_noise((len(HOODS), len(YEARS)), p.scale, seed) if seed < 5 else None
        result = dprel.release(sample, p, person="tok", noise=noise)
        for c, index in zip(result.cells, result.cube.coordinates(), strict=True):
            t = half_width(_summed(index, (len(HOODS), len(YEARS))), p.scale, 0.05)
            expected = dprel.LOW_RELIABILITY if t > 0.5 * c["numerator"] else dprel.DP
            assert c["status"] == expected
            if noise is not None:
                statuses.add(c["status"])
    assert statuses == {dprel.DP, dprel.LOW_RELIABILITY}
    strict = dprel.Reliability(max_relative_half_width=0.001)
    zero = np.zeros((len(HOODS), len(YEARS)), dtype=np.int64)
    flagged = dprel.release(
        data, plan("count", epsilon=1.0, reliability=strict), person="tok", noise=zero
    )
    assert all(c["status"] == dprel.LOW_RELIABILITY for c in flagged.cells)


def test_parameters_describe_the_method() -> None:
    p = plan("percent", epsilon=0.5, k=2)
    result = dprel.release(random_frame(50), p, person="tok", numerator=pl.col("ready"))
    params = result.parameters
    assert params["mechanism"] == "discrete_laplace"
    assert (params["epsilon"], params["delta"], params["max_contributions"]) == (p.epsilon, 0.0, 2)
    assert params["noise_scale"] == p.scale == pytest.approx(4.0)
    assert params["confidence"] == 0.95
    assert params["opendp"].split(".")[0].isdigit()


def test_empty_frame_and_no_dimensions() -> None:
    empty = frame([])
    result = dprel.release(
        empty, plan("percent", epsilon=1.0), person="tok", numerator=pl.col("ready")
    )
    assert len(result.cells) == 12
    p = dprel.plan((), (), "count", NO_NOISE, 1)
    result = dprel.release(random_frame(77), p, person="tok")
    assert result.cells == [
        {
            "numerator": 77,
            "denominator": None,
            "value": 77.0,
            "status": "dp",
            "lower": 77.0,
            "upper": 77.0,
        }
    ]
    p = dprel.plan((), (), "percent", NO_NOISE, 1)
    result = dprel.release(
        frame([(1, "a", "b", True), (2, "a", "b", False)]),
        p,
        person="tok",
        numerator=pl.col("ready"),
    )
    assert result.cells[0]["value"] == 50.0


def test_injected_noise_is_added_to_the_exact_counts_and_checked() -> None:
    # The tests' seam: the counts come from the same OpenDP pipeline, the noise is the given one.
    data = random_frame(300)
    p = plan("percent", epsilon=1.0, k=2)
    exact = dprel.release(data, plan("percent"), person="tok", numerator=pl.col("ready")).cube
    noise = laplace_noise((len(HOODS), len(YEARS), 2), p.scale, seed=3)
    cube = dprel.release(data, p, person="tok", numerator=pl.col("ready"), noise=noise).cube
    assert exact.denominator is not None and cube.denominator is not None
    finest = (slice(0, len(HOODS)), slice(0, len(YEARS)))
    assert np.array_equal(
        cube.numerator[finest], np.maximum(exact.numerator[finest] + noise[..., 1], 0)
    )
    complement = exact.denominator[finest] - exact.numerator[finest]
    assert np.array_equal(
        cube.denominator[finest] - cube.numerator[finest], np.maximum(complement + noise[..., 0], 0)
    )
    for bad in (noise[..., 1], noise.astype(np.float64)):
        with pytest.raises(dprel.DpInvalid, match="injected noise"):
            dprel.release(data, p, person="tok", numerator=pl.col("ready"), noise=bad)


# --- failures: clear errors, nothing released, never retried ----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((("hood", "hood"), (HOODS, HOODS), "count", 1.0, 1), "twice"),
        ((("hood",), (HOODS, YEARS), "count", 1.0, 1), "categories"),
        ((("hood",), ((),), "count", 1.0, 1), "no public categories"),
        ((("hood",), (("a", "a"),), "count", 1.0, 1), "category twice"),
        ((("hood",), (("a", TOTAL),), "count", 1.0, 1), "reserved"),
        ((("__bb_person",), (("a",),), "count", 1.0, 1), "reserved"),
        ((("hood",), (HOODS,), "mean", 1.0, 1), "counts and rates"),
        ((("hood",), (HOODS,), "count", 0.0, 1), "epsilon"),
        ((("hood",), (HOODS,), "count", -1.0, 1), "epsilon"),
        ((("hood",), (HOODS,), "count", math.nan, 1), "epsilon"),
        ((("hood",), (HOODS,), "count", math.inf, 1), "epsilon"),
        ((("hood",), (HOODS,), "count", True, 1), "epsilon"),
        ((("hood",), (HOODS,), "count", "1", 1), "epsilon"),
        ((("hood",), (HOODS,), "count", 1.0, 0), "max_contributions"),
        ((("hood",), (HOODS,), "count", 1.0, 1.5), "max_contributions"),
        ((("hood",), (HOODS,), "count", 1.0, True), "max_contributions"),
    ],
)
def test_bad_plans_are_rejected(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(dprel.DpInvalid, match=message) as caught:
        dprel.plan(*args)
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.kind == "invalid-dp-release"


def test_bad_reliability_thresholds_are_rejected() -> None:
    with pytest.raises(dprel.DpInvalid):
        plan(reliability=dprel.Reliability(max_relative_half_width=0))
    with pytest.raises(dprel.DpInvalid):
        plan(reliability=dprel.Reliability(max_rate_interval_width=1.5))


def test_bad_frames_fail_before_noise_without_echoing_data() -> None:
    data = random_frame(20)
    p = plan("percent", epsilon=1.0)
    with pytest.raises(dprel.DpInvalid, match="person column"):
        dprel.release(data, p, person="student_id", numerator=pl.col("ready"))
    with pytest.raises(dprel.DpInvalid, match="numerator"):
        dprel.release(data, p, person="tok")
    with pytest.raises(dprel.DpInvalid, match="cannot be evaluated") as caught:
        dprel.release(data, p, person="tok", numerator=pl.col("no_such_column") > 1)
    assert "Ashland" not in str(caught.value) and caught.value.__cause__ is None
    with pytest.raises(dprel.DpInvalid):
        dprel.release(data.drop("year"), p, person="tok", numerator=pl.col("ready"))


def test_failure_after_noise_releases_nothing_and_does_not_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    real = dprel._noisy_cells

    def counting(p: dprel.DpPlan, prepared: pl.DataFrame) -> np.ndarray:
        calls.append(1)
        return real(p, prepared)

    def broken(*_: Any) -> Any:
        raise ValueError("a value from the data: Ashland")

    monkeypatch.setattr(dprel, "_noisy_cells", counting)
    monkeypatch.setattr(dprel, "_cells", broken)
    with pytest.raises(dprel.DpFailed) as caught:
        dprel.release(
            random_frame(30), plan("percent", epsilon=1.0), person="tok", numerator=pl.col("ready")
        )
    assert calls == [1]
    assert isinstance(caught.value, DomainError) and caught.value.kind == "dp-release-failed"
    assert "Ashland" not in str(caught.value) and caught.value.__cause__ is None
