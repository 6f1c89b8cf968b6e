"""Releases of the same data with other dimensions, and differencing attacks across them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from aggregation.cube import TOTAL, build_cube
from aggregation.protection import (
    LinkedReleaseMismatch,
    PublishedTable,
    linked_dimensions,
    protect,
)
from aggregation.suppression import FREE, PRIMARY, SECONDARY
from tests.aggregation.attack import Attacker, sensitive_requirements
from tests.aggregation.test_protection import fully_suppressed, shown


def people(rng: np.random.Generator, size: int) -> pl.DataFrame:
    hood = rng.choice(5, size=size, p=[0.02, 0.18, 0.3, 0.25, 0.25])
    race = rng.choice(3, size=size, p=[0.06, 0.44, 0.5])
    year = rng.integers(0, 3, size=size)
    return pl.DataFrame(
        {
            "person": [f"p{i}" for i in range(size)],
            "hood": [f"h{h}" for h in hood],
            "race": [f"r{r}" for r in race],
            "year": [f"y{y}" for y in year],
            "ready": rng.random(size) < 0.5,
        }
    )


CATS = {
    "hood": tuple(f"h{i}" for i in range(5)),
    "race": tuple(f"r{i}" for i in range(3)),
    "year": tuple(f"y{i}" for i in range(3)),
}


def cube_of(frame: pl.DataFrame, dims: tuple[str, ...], rate: bool = False):
    cats = tuple(CATS[d] for d in dims)
    if rate:
        return build_cube(frame.filter(pl.col("ready")), frame, "person", dims, cats)
    return build_cube(frame, None, "person", dims, cats)


def joint_attacker(frame, releases, rate=False) -> tuple[Attacker, object]:
    dims: tuple[str, ...] = ()
    for pr in releases:
        dims = linked_dimensions(dims, [pr.published()])
    joint = cube_of(frame, dims, rate)
    return Attacker(joint, [shown(pr) for pr in releases]), joint


def assert_all_protected(frame, releases, rate=False) -> None:
    """After the last release, every sensitive quantity of every release keeps its protection
    interval, or at least all that the earlier releases and the last one's statuses leave."""
    attacker, joint = joint_attacker(frame, releases, rate)
    *earlier, last = releases
    baseline = Attacker(joint, [shown(pr) for pr in earlier] + [fully_suppressed(last)])
    for pr in releases:
        assert pr.audit.ok
        for labels, quantity, lower, upper in sensitive_requirements(pr.table, pr.k):
            dims = pr.table.dimensions
            floor, ceiling = baseline.interval(dims, labels, quantity)
            lower, upper = max(lower, floor), min(upper, ceiling)
            low, high = attacker.interval(dims, labels, quantity)
            assert low <= lower + 1e-6 and high >= upper - 1e-6, (dims, labels, low, high)


@pytest.mark.parametrize("seed", range(4))
def test_second_release_protects_the_first(seed):
    rng = np.random.default_rng(seed)
    frame = people(rng, 260 + 40 * seed)
    rate = seed % 2 == 1
    first = protect(cube_of(frame, ("hood", "year"), rate), 5)
    previous = [first.published()]
    dims = linked_dimensions(("race", "year"), previous)
    assert dims == ("race", "year", "hood")
    second = protect(cube_of(frame, dims, rate), 5, dimensions=("race", "year"), previous=previous)
    assert second.audit.linked_tables == 1
    assert second.table.dimensions == ("race", "year")
    assert_all_protected(frame, [first, second], rate)
    assert_all_protected(frame, [first], rate)
    # A third release over all three dimensions, linked to both.
    previous.append(second.published())
    dims = linked_dimensions(("hood", "race", "year"), previous)
    third = protect(
        cube_of(frame, dims, rate), 5, dimensions=("hood", "race", "year"), previous=previous
    )
    assert_all_protected(frame, [first, second, third], rate)


def test_differencing_two_releases_is_blocked_only_when_linked():
    # Release A: children by neighborhood. h0 has 3 children (under k = 5) and is suppressed;
    # A's cheapest complement is h1 (its smallest other cell), and h2, h3, h4 and the total are
    # published. Release B: children by neighborhood and year. If B is protected on its own, it
    # may publish h1's all-years total, and then h0 = total - h1 - h2 - h3 - h4 exactly.
    rows = []
    counts = {"h0": [1, 1, 1], "h1": [6, 7, 7], "h2": [9, 8, 9], "h3": [10, 9, 8], "h4": [9, 9, 10]}
    n = 0
    for hood, per_year in counts.items():
        for y, c in enumerate(per_year):
            for _ in range(c):
                rows.append({"person": f"p{n}", "hood": hood, "year": f"y{y}"})
                n += 1
    frame = pl.DataFrame(rows)
    a = protect(cube_of(frame, ("hood",)), 5)
    assert a.status[0] == PRIMARY and a.status[1] == SECONDARY
    h1_total = (1, 3)  # (h1, all years) in B's table

    alone = protect(cube_of(frame, ("hood", "year")), 5)
    attacker, _ = joint_attacker(frame, [a, alone])
    low, high = attacker.interval(("hood",), ("h0",), "numerator")
    if alone.status[h1_total] == FREE:
        assert high - low < 1e-6, "the subtraction recovers the suppressed cell exactly"

    previous = [a.published()]
    linked = protect(cube_of(frame, ("hood", "year")), 5, previous=previous)
    assert linked.status[h1_total] != FREE
    attacker, _ = joint_attacker(frame, [a, linked])
    low, high = attacker.interval(("hood",), ("h0",), "numerator")
    assert low <= 0 and high >= 4
    # Cells A already published stay published: hiding them in B would protect nothing.
    assert linked.status[2, 3] == FREE and linked.numerator[2, 3] == 26
    assert_all_protected(frame, [a, linked])


def test_published_table_round_trips_through_stored_cells():
    rng = np.random.default_rng(7)
    frame = people(rng, 300)
    pr = protect(cube_of(frame, ("hood", "year"), rate=True), 5, rounding="base5")
    stored = PublishedTable.from_cells(
        pr.table.dimensions,
        pr.table.categories,
        pr.cells(),
        k=5,
        rate=True,
        rounding="base5",
    )
    direct = pr.published()
    assert (stored.status == direct.status).all()
    assert np.array_equal(stored.numerator, direct.numerator, equal_nan=True)
    assert np.array_equal(stored.denominator, direct.denominator, equal_nan=True)
    second = protect(
        cube_of(frame, ("race", "year", "hood"), rate=True),
        5,
        dimensions=("race", "year"),
        previous=[stored],
    )
    assert second.audit.ok


def test_earlier_release_of_other_data_is_refused():
    rng = np.random.default_rng(3)
    frame = people(rng, 300)
    first = protect(cube_of(frame, ("hood", "year")), 5)
    other = frame.head(250)
    with pytest.raises(LinkedReleaseMismatch):
        protect(
            cube_of(other, ("race", "year", "hood")),
            5,
            dimensions=("race", "year"),
            previous=[first.published()],
        )
    wrong = PublishedTable.from_cells(
        ("hood", "year"), (CATS["hood"], CATS["year"]), first.cells(), k=5, rate=False
    )
    with pytest.raises(LinkedReleaseMismatch):
        protect(cube_of(frame, ("hood", "year"), rate=True), 5, previous=[wrong])
    with pytest.raises(LinkedReleaseMismatch):
        PublishedTable.from_cells(
            ("hood",), (("h0", "h1"),), [{"hood": "h9", "status": "free"}], k=5, rate=False
        )
    with pytest.raises(ValueError):
        protect(cube_of(frame, ("hood", "year")), 5, dimensions=("hood",))


def test_earlier_leak_limits_but_never_blocks():
    # An earlier release that published a small cell's whole line (here by hand, as a
    # naive suppression would) already discloses it: the new release cannot undo that, and
    # must not make it worse. Its requirement is reported as limited.
    rows = [{"person": f"p{i}", "hood": "h0" if i < 3 else "h1", "year": "y0"} for i in range(20)]
    frame = pl.DataFrame(rows)
    leaked = PublishedTable(
        dimensions=("hood",),
        categories=(CATS["hood"],),
        status=np.array([PRIMARY, "free", PRIMARY, PRIMARY, PRIMARY, "free"], dtype=object),
        numerator=np.array([np.nan, 17, np.nan, np.nan, np.nan, 20.0]),
        denominator=None,
        k=5,
    )
    pr = protect(cube_of(frame, ("hood", "year")), 5, previous=[leaked])
    assert pr.audit.ok
    limited = [c for c in pr.audit.checks if c.limited]
    earlier = [c for c in limited if c.requirement.table == 1]
    # 17 of 20 published: h0 and the three empty neighborhoods share 3 people, so each is
    # known to be at most 3 instead of 4; the new release leaves every one of them at that.
    assert [(c.requirement.lower, c.requirement.upper) for c in earlier] == [(0.0, 3.0)] * 4
    assert all(c.wanted == (0.0, 4.0) for c in earlier)
    assert pr.audit.summary()["limited"] == len(limited)
    assert pr.status[0, 0] == PRIMARY and pr.table.labels((0, 3)) == ("h0", TOTAL)


@pytest.mark.parametrize("seed", range(3))
def test_people_in_several_cells(seed):
    # A child counted in two school years is one child in the all-years total: the table is
    # not additive, and the attacker is assumed to know by how much each line overlaps.
    rng = np.random.default_rng(50 + seed)
    base = people(rng, 220)
    again = base.sample(90, seed=seed).with_columns(
        pl.lit("y2").alias("year"), (pl.col("ready") | (rng.random() < 0.5)).alias("ready")
    )
    frame = pl.concat([base.filter(pl.col("year") != "y2"), again])
    rate = seed != 1
    cube = cube_of(frame, ("hood", "year"), rate)
    overlap = cube.numerator[:-1, :-1].sum(axis=1) - cube.numerator[:-1, -1]
    assert overlap.max() > 0
    pr = protect(cube, 5)
    assert_all_protected(frame, [pr], rate)
