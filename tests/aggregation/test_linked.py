"""Releases of the same records with other dimensions and filters, and the differencing attacks
across them: the joint audit (disclosure.joint) against an independent attacker."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from aggregation.stored import published_table, release_cells, release_parameters
from disclosure.cube import TOTAL, build_cube
from disclosure.joint import Earlier, Shape
from disclosure.protection import LinkedReleaseMismatch, protect
from tests.aggregation.attack import Attacker, sensitive_requirements
from tests.aggregation.test_protection import fully_suppressed, shown
from tests.disclosure.independent import disclosures
from tests.disclosure.scenarios import CATEGORIES, IMPOSSIBLE, History, people

SUBMISSIONS = ["s0", "s1", "s2"]


def shape(*dims: str, numerator=None, denominator=None) -> Shape:
    return Shape(
        dataset="survey",
        dims=dims,
        categories=tuple(CATEGORIES[d] for d in dims),
        numerator=dict(numerator or {}),
        denominator=None if denominator is None else dict(denominator),
    )


def cell_of(history: History, release: int, **labels: str) -> dict:
    shown = history.shown[release]
    for cell in shown.cells:
        if all(cell[d] == labels.get(d, TOTAL) for d in shown.dims):
            return dict(cell)
    raise AssertionError(labels)


def by_hand(counts: dict[str, list[int]]) -> pl.DataFrame:
    """Records by area and period, one per person, in one submission."""
    rows = []
    for area, per_period in counts.items():
        for p, c in enumerate(per_period):
            rows += [{"area": area, "period": f"p{p}"}] * c
    n = len(rows)
    return pl.DataFrame(
        {
            "person": np.arange(n, dtype=np.uint64) + 1,
            "submission": ["s0"] * n,
            "period": [r["period"] for r in rows],
            "area": [r["area"] for r in rows],
            "group": ["g0"] * n,
            "flag": ["true" if i % 2 else "false" for i in range(n)],
            "band": ["mid"] * n,
        }
    )


@pytest.mark.parametrize("seed", range(4))
def test_each_release_protects_every_earlier_one(seed):
    rng = np.random.default_rng(seed)
    records = people(rng, 160 + 30 * seed)
    history = History(records, k=5)
    rate = seed % 2 == 1
    outcome = {"flag": "true"} if rate else {}
    for dims in (("area", "period"), ("group", "period"), ("area", "group", "period")):
        history.release(
            shape(*dims, numerator=outcome, denominator={} if rate else None),
            "percent" if rate else "count",
        )
        assert disclosures(records, CATEGORIES, SUBMISSIONS, history.shown, IMPOSSIBLE) == []


def test_differencing_two_releases_is_blocked_only_when_linked():
    # Release A: people by area. a0 has 3 (under k = 5) and is suppressed with a complement;
    # release B: people by area and period. Protected on its own, B may publish the total of
    # A's complement, and then a0 = total - the others exactly. Protected with A, it may not.
    records = by_hand({"a0": [1, 1, 1], "a1": [6, 7, 7], "a2": [9, 8, 9], "a3": [10, 9, 8]})
    linked = History(records, k=5)
    linked.release(shape("area"), "count")
    assert cell_of(linked, 0, area="a0")["status"] == "suppressed"
    linked.release(shape("area", "period"), "count")
    assert disclosures(records, CATEGORIES, ["s0"], linked.shown, IMPOSSIBLE) == []

    alone = History(records, k=5)
    alone.release(shape("area", "period"), "count")
    together = [linked.shown[0], alone.shown[0]]
    found = disclosures(records, CATEGORIES, ["s0"], together, IMPOSSIBLE)
    if all(cell_of(alone, 0, area=a)["status"] != "suppressed" for a in ("a1", "a2", "a3")):
        assert found, "B alone publishes every other area's total: a0 is the difference"
    # Cells A already published stay published in B: hiding them would protect nothing.
    assert cell_of(linked, 1, area="a2")["numerator"] == 26


def test_a_filter_that_excludes_one_group_cannot_be_subtracted_from_the_total():
    # Denning's tracker: count everyone, then everyone but group g1 (a slice "group in {g0, g2}"
    # is what a partition filter can say; the engine places both in one joint cube).
    rng = np.random.default_rng(11)
    records = people(rng, 140)
    history = History(records, k=5)
    history.release(shape("area", "period"), "count")
    history.release(shape("area", "period", "group"), "count")
    history.release(shape("area", "period", numerator={"group": "g1"}), "count")
    history.release(shape("period", numerator={"flag": "true"}, denominator={}), "percent")
    assert disclosures(records, CATEGORIES, SUBMISSIONS, history.shown, IMPOSSIBLE) == []


def test_earlier_leak_limits_but_never_blocks():
    # An earlier release that published a small cell's whole line (here by hand, as a naive
    # suppression would) already discloses it: a new release cannot undo that, and must not
    # make it worse. Its requirements are reported as limited, at what was already known.
    records = by_hand({"a0": [3, 0, 0], "a1": [17, 0, 0]})
    leaked = [
        {"area": "a0", "status": "suppressed", "numerator": None},
        {"area": "a1", "status": "free", "numerator": 17},
        {"area": "a2", "status": "suppressed", "numerator": None},
        {"area": "a3", "status": "suppressed", "numerator": None},
        {"area": TOTAL, "status": "free", "numerator": 20},
    ]
    history = History(records, k=5)
    history.earlier.append(
        Earlier(
            shape=shape("area"),
            scope=frozenset({"s0"}),
            published=published_table(
                ("area",),
                (CATEGORIES["area"],),
                leaked,
                {"min_cell_size": 5, "rounding": "none"},
                rate=False,
            ),
            x=np.array([3, 17, 0, 0, 20]),
            n=None,
        )
    )
    history.release(shape("area", "period"), "count")
    audit = history.last.protection.proof
    assert audit.ok
    # 17 of 20 published: a0, a2 and a3 share 3 people, so each is known to be at most 3. The
    # new release's all-period cells of those areas are the same counts (one requirement each).
    totals = {3: "a0", 11: "a2", 15: "a3"}  # (area, all periods) in the new table
    limited = {c.requirement.cell: c for c in audit.checks if c.limited}
    for cell in totals:
        check = limited[cell]
        assert (check.requirement.lower, check.requirement.upper) == (0.0, 3.0)
        assert check.wanted == (0.0, 4.0)
    assert history.last.summary["limited"] == len(limited)


def test_published_table_round_trips_through_stored_cells():
    cube = build_cube(
        pl.DataFrame({"person": [1, 2, 3], "d": ["a", "a", "b"]}).filter(pl.col("person") > 1),
        pl.DataFrame({"person": [1, 2, 3], "d": ["a", "a", "b"]}),
        "person",
        ("d",),
        (("a", "b"),),
    )
    pr = protect(cube, 5, rounding="base5")
    stored = published_table(
        pr.table.dimensions,
        pr.table.categories,
        release_cells(pr),
        release_parameters(pr),
        rate=True,
    )
    direct = pr.published()
    assert (stored.status == direct.status).all()
    assert np.array_equal(stored.numerator, direct.numerator, equal_nan=True)
    with pytest.raises(LinkedReleaseMismatch):
        published_table(
            ("d",), (("a", "b"),), [{"d": "z", "status": "free"}], {"min_cell_size": 5}, rate=False
        )


def _people_by_hood(rng: np.random.Generator, size: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "person": [f"p{i}" for i in range(size)],
            "hood": [f"h{h}" for h in rng.choice(5, size=size, p=[0.02, 0.18, 0.3, 0.25, 0.25])],
            "year": [f"y{y}" for y in rng.integers(0, 3, size=size)],
            "ready": rng.random(size) < 0.5,
        }
    )


@pytest.mark.parametrize("seed", range(3))
def test_people_in_several_cells(seed):
    # A child counted in two school years is one child in the all-years total: the table is
    # not additive, and the attacker is assumed to know by how much each line overlaps.
    rng = np.random.default_rng(50 + seed)
    base = _people_by_hood(rng, 220)
    again = base.sample(90, seed=seed).with_columns(
        pl.lit("y2").alias("year"), (pl.col("ready") | (rng.random() < 0.5)).alias("ready")
    )
    frame = pl.concat([base.filter(pl.col("year") != "y2"), again])
    rate = seed != 1
    dims = ("hood", "year")
    cats = (tuple(f"h{i}" for i in range(5)), ("y0", "y1", "y2"))
    numerator = frame.filter(pl.col("ready")) if rate else frame
    cube = build_cube(numerator, frame if rate else None, "person", dims, cats)
    overlap = cube.numerator[:-1, :-1].sum(axis=1) - cube.numerator[:-1, -1]
    assert overlap.max() > 0
    pr = protect(cube, 5)
    assert pr.proof.ok
    attacker = Attacker(cube, [shown(pr)])
    baseline = Attacker(cube, [fully_suppressed(pr)])
    for labels, quantity, lower, upper in sensitive_requirements(cube, 5):
        floor, ceiling = baseline.interval(dims, labels, quantity)
        lower, upper = max(lower, floor), min(upper, ceiling)
        low, high = attacker.interval(dims, labels, quantity)
        assert low <= lower + 1e-6 and high >= upper - 1e-6, (labels, quantity, low, high)
