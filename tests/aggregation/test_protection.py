"""Primary and secondary suppression, audited by an independent attacker."""

from __future__ import annotations

import numpy as np
import pytest

from aggregation.stored import release_cells
from disclosure import suppression
from disclosure.protection import LinkedReleaseMismatch, Protection, protect
from disclosure.suppression import FREE, PRIMARY, SECONDARY, STRUCTURAL
from tests.aggregation.attack import Attacker, Shown, sensitive_requirements
from tests.aggregation.tables import random_table, table


def shown(pr: Protection) -> Shown:
    cells = release_cells(pr)
    dims = pr.table.dimensions
    key = lambda c: tuple(c[d] for d in dims)  # noqa: E731
    return Shown(
        dims,
        {key(c): c["status"] for c in cells},
        {key(c): c["numerator"] for c in cells},
        {key(c): c["denominator"] for c in cells},
        pr.k,
        pr.rounding,
        pr.top_code_percent,
        pr.bottom_code_percent,
        {key(c): c["lower"] for c in cells},
    )


def fully_suppressed(pr: Protection) -> Shown:
    """The same release with every cell suppressed but its structural zeros: what its statuses
    alone reveal."""
    view = shown(pr)
    status = {
        key: (s if s in (PRIMARY, STRUCTURAL) else SECONDARY) for key, s in view.status.items()
    }
    return Shown(view.dimensions, status, {}, {}, view.k)


def assert_protected(pr: Protection, p: int | None = None) -> Attacker:
    """Every sensitive quantity's protection interval lies inside the independent attacker's
    interval, except where the statuses alone already reveal more: there, the attacker must
    learn nothing beyond what a fully suppressed release would leave him."""
    assert pr.proof.ok, pr.proof.violations()
    attacker = Attacker(pr.table, [shown(pr)])
    baseline = Attacker(pr.table, [fully_suppressed(pr)])
    for labels, quantity, lower, upper in sensitive_requirements(pr.table, pr.k, p):
        low, high = attacker.interval(pr.table.dimensions, labels, quantity)
        floor, ceiling = baseline.interval(pr.table.dimensions, labels, quantity)
        lower, upper = max(lower, floor), min(upper, ceiling)
        assert low <= lower + 1e-6 and high >= upper - 1e-6, (labels, quantity, low, high)
    return attacker


def test_one_small_count_needs_one_complement():
    pr = protect(table([3, 20, 30]), 5, exact_audit=True)
    assert list(pr.status) == [PRIMARY, SECONDARY, FREE, FREE]
    assert list(pr.numerator) == [None, None, 30, 53]
    attacker = assert_protected(pr)
    # Hand check: a + b = 23, and a withheld cell says nothing more: a in [0, 23].
    assert attacker.interval(("d0",), ("d00",), "numerator") == pytest.approx((0.0, 23.0))
    (check,) = pr.proof.checks
    assert check.min_exact and check.max_exact
    assert (check.min_value, check.max_value) == pytest.approx((0.0, 23.0))


def test_two_by_two_hand_checked_pattern():
    # Cell (0, 0) = 3 under k = 5. The cheapest rectangle through it that can move it to 0 and
    # to 4 with every other corner staying >= 5 uses (0, 1) = 20, (2, 0) = 30 and (2, 1) = 12.
    pr = protect(table([[3, 20, 30], [25, 40, 50], [30, 12, 60]]), 5)
    hidden = {tuple(int(i) for i in ix) for ix in zip(*np.nonzero(pr.status != FREE), strict=True)}
    assert hidden == {(0, 0), (0, 1), (2, 0), (2, 1)}
    assert pr.status[0, 0] == PRIMARY
    attacker = assert_protected(pr)
    assert attacker.interval(("d0", "d1"), ("d00", "d10"), "numerator") == pytest.approx((0, 23))


def test_lone_small_cell_in_a_line_is_never_derivable():
    # Without secondary suppression, 3 = 53 - 20 - 30.
    pr = protect(table([[3, 20, 30], [25, 40, 50]]), 5)
    assert (pr.status == SECONDARY).any()
    assert_protected(pr)


def test_hundred_percent_of_six_children_is_not_published():
    cube = table([6, 20, 10, 30], [6, 40, 50, 45])
    pr = protect(cube, 5, exact_audit=True)
    assert pr.status[0] == PRIMARY
    assert pr.numerator[0] is None and pr.value[0] is None
    attacker = assert_protected(pr)
    # The attacker cannot tell whether everybody, or nobody, in the cell had the outcome.
    low, high = attacker.interval(("d0",), ("d00",), "complement")
    assert low <= 0 and high >= 4
    low, high = attacker.interval(("d0",), ("d00",), "numerator")
    assert low <= 0 and high >= 4


def test_denominator_minus_numerator_under_k_is_primary():
    masks = suppression.sensitive(np.array([58, 3, 30]), np.array([60, 60, 60]), 5)
    assert list(masks["complement"]) == [True, False, False]
    assert list(masks["numerator"]) == [False, True, False]


def test_an_empty_population_is_suppressed_like_any_small_count():
    # A rate cell with nobody in it is primary, like any cell under k: published as "empty" it
    # would answer "is anyone in this set?" for free.
    pr = protect(table([[0, 10, 12], [9, 11, 14]], [[0, 30, 25], [20, 33, 28]]), 5)
    assert pr.status[0, 0] == PRIMARY
    assert pr.numerator[0, 0] is None and pr.denominator[0, 0] is None
    assert any(c.requirement.cell == 0 for c in pr.proof.checks)
    attacker = assert_protected(pr)
    assert attacker.interval(("d0", "d1"), ("d00", "d10"), "denominator") == pytest.approx((0, 20))
    # A zero count is under k.
    counts = protect(table([0, 30, 40]), 5)
    assert counts.status[0] == PRIMARY
    assert_protected(counts)


def test_structural_zeros_are_published_and_protect_nothing():
    # The agreement declares cell (0, 0) impossible: everybody knows it is 0 of 0.
    structural = np.zeros((3, 4), dtype=bool)
    structural[0, 0] = True
    pr = protect(
        table([[0, 10, 12], [9, 11, 14]], [[0, 30, 25], [20, 33, 28]]), 5, structural=structural
    )
    assert pr.status[0, 0] == STRUCTURAL
    assert pr.numerator[0, 0] == 0 and pr.denominator[0, 0] == 0 and pr.value[0, 0] is None
    assert not any(c.requirement.cell == 0 for c in pr.proof.checks)
    assert (pr.status == FREE).sum() == pr.status.size - 1
    assert_protected(pr)


def test_a_structural_zero_with_records_is_refused():
    structural = np.zeros(4, dtype=bool)
    structural[1] = True
    with pytest.raises(LinkedReleaseMismatch):
        protect(table([3, 20, 30]), 5, structural=structural)


def test_whole_table_under_k_is_suppressed_and_still_protected():
    pr = protect(table([1, 2]), 5)
    assert set(pr.status.ravel()) == {PRIMARY}
    assert_protected(pr)


def test_published_values_are_the_true_ones():
    cube = table([[13, 20, 30], [25, 40, 50]], [[20, 41, 50], [40, 60, 90]])
    pr = protect(cube, 5)
    assert (pr.status == FREE).all()
    assert pr.numerator[0, 0] == 13 and pr.denominator[0, 0] == 20 and pr.value[0, 0] == 65.0
    per_1000 = protect(cube, 5, unit="rate_per_1000")
    assert per_1000.value[0, 0] == 650.0


@pytest.mark.parametrize("seed", range(24))
def test_random_tables_pass_the_independent_audit(seed):
    rng = np.random.default_rng(seed)
    dims = 1 + seed % 4
    rate = seed % 3 != 0
    cube = random_table(rng, dims, rate)
    k = int(rng.choice([3, 5, 11]))
    pr = protect(cube, k, exact_audit=seed % 5 == 0)
    primary = suppression.primary_mask(cube, k)
    assert ((pr.status == PRIMARY) == primary).all()
    assert_protected(pr)
    # Secondary cells are never small ones, and a published cell shows its true counts.
    for index in cube.coordinates():
        if pr.status[index] == FREE:
            assert pr.numerator[index] == cube.numerator[index]


@pytest.mark.parametrize("seed", range(6))
def test_lower_protection_level_is_met_and_never_suppresses_more(seed):
    rng = np.random.default_rng(100 + seed)
    cube = random_table(rng, 2 + seed % 2, rate=True)
    full = protect(cube, 5)
    weak = protect(cube, 5, protection_level=1)
    assert_protected(weak, p=1)
    assert (weak.status == SECONDARY).sum() <= (full.status == SECONDARY).sum() + 2


def test_bad_inputs_are_refused():
    cube = table([3, 20, 30])
    with pytest.raises(ValueError):
        protect(cube, 0)
    with pytest.raises(ValueError):
        protect(cube, 5, unit="percent")
    with pytest.raises(ValueError):
        protect(cube, 5, rounding="base7")
    with pytest.raises(ValueError):
        protect(cube, 5, protection_level=-1)
    with pytest.raises(ValueError):
        protect(cube, 5, dimensions=("nope",))
    with pytest.raises(ValueError):
        protect(table([3, 20], [4, 30]), 5, unit="count")


def test_same_answers_without_highspy(monkeypatch):
    """Without highspy the programs run through scipy's linprog (same HiGHS, no warm start)."""
    from disclosure import lp

    cube = random_table(np.random.default_rng(3), 3, rate=True)
    with_warm_start = protect(cube, 5, exact_audit=True)
    monkeypatch.setattr(lp, "_HIGHS", None)
    without = protect(cube, 5, exact_audit=True)
    assert (without.status == with_warm_start.status).all()
    for a, b in zip(with_warm_start.proof.checks, without.proof.checks, strict=True):
        assert a.min_value == pytest.approx(b.min_value, abs=1e-6)
        assert a.max_value == pytest.approx(b.max_value, abs=1e-6)


def test_a_table_without_dimensions_is_its_grand_total():
    from disclosure.cube import Cube

    small = protect(Cube((), (), np.array(3), None), 5)
    assert small.status[()] == PRIMARY and release_cells(small)[0]["numerator"] is None
    large = protect(Cube((), (), np.array(40), np.array(90)), 5)
    assert release_cells(large) == [
        {
            "numerator": 40,
            "denominator": 90,
            "value": 44.4,
            "status": FREE,
            "lower": None,
            "upper": None,
        }
    ]
