"""Rounding and coding: the published form, and the audit of what it still reveals."""

from __future__ import annotations

import numpy as np
import pytest

from disclosure import rounding as rnd
from disclosure.protection import protect
from disclosure.suppression import FREE, PRIMARY, ROUNDED
from policy.vocabulary import RoundingScheme
from tests.aggregation.attack import Attacker, coded_requirements
from tests.aggregation.tables import random_table, table
from tests.aggregation.test_protection import assert_protected, fully_suppressed, shown


def test_base5_is_conventional_rounding_with_its_interval():
    r = rnd.round_counts(np.array([0, 1, 2, 3, 7, 8, 12, 13]), RoundingScheme.BASE5)
    assert list(r.published) == [0, 0, 0, 5, 5, 10, 10, 15]
    assert list(r.lower) == [0, 0, 0, 3, 3, 8, 8, 13]
    assert list(r.upper) == [2, 2, 2, 7, 7, 12, 12, 17]
    assert rnd.interval_of(10.0, RoundingScheme.BASE5) == (8.0, 12.0)
    assert rnd.interval_of(0.0, RoundingScheme.BASE5) == (0.0, 2.0)


def test_midpoint6_publishes_band_midpoints():
    r = rnd.round_counts(np.array([0, 5, 6, 11, 12]), RoundingScheme.MIDPOINT6)
    assert list(r.published) == [2.5, 2.5, 8.5, 8.5, 14.5]
    assert list(r.lower) == [0, 0, 6, 6, 12]
    assert list(r.upper) == [5, 5, 11, 11, 17]
    assert rnd.interval_of(8.5, RoundingScheme.MIDPOINT6) == (6.0, 11.0)


def test_rounding_refuses_bad_input():
    with pytest.raises(ValueError):
        rnd.round_counts(np.array([-1]), RoundingScheme.BASE5)
    with pytest.raises(ValueError):
        rnd.check_scheme("base10")
    with pytest.raises(ValueError):
        rnd.coded(np.array([1]), np.array([2]), 40.0, None)
    with pytest.raises(ValueError):
        rnd.coded(np.array([1]), np.array([2]), None, 60.0)


def test_ratio_and_bounds():
    assert rnd.ratio(1, 3, 100.0) == 33.3
    assert rnd.ratio(1, 0, 100.0) is None
    assert rnd.ratio_bounds(8, 12, 18, 22, 100.0) == (36.4, 66.7)
    assert rnd.ratio_bounds(18, 22, 18, 22, 100.0)[1] == 100.0


@pytest.mark.parametrize("scheme", [RoundingScheme.BASE5, RoundingScheme.MIDPOINT6])
def test_rounded_release_is_audited_as_intervals(scheme):
    rng = np.random.default_rng(11)
    cube = random_table(rng, 2, rate=True)
    pr = protect(cube, 5, rounding=scheme)
    published = pr.status == ROUNDED
    assert published.any() and not (pr.status == FREE).any()
    for index in zip(*np.nonzero(published), strict=True):
        num = pr.numerator[index]
        if scheme == RoundingScheme.BASE5:
            assert num % 5 == 0 and abs(num - cube.numerator[index]) <= 2
        else:
            assert num % 6 == 2.5 and abs(num - cube.numerator[index]) <= 3
        low, high = pr.lower[index], pr.upper[index]
        true = 100 * cube.numerator[index] / cube.denominator[index]
        assert low <= true + 0.05 and true <= high + 0.05
    assert_protected(pr)


def test_rounding_never_needs_more_suppression_than_exact_counts():
    rng = np.random.default_rng(5)
    for _ in range(3):
        cube = random_table(rng, 2, rate=False)
        exact = protect(cube, 5)
        rounded = protect(cube, 5, rounding=RoundingScheme.BASE5)
        assert (rounded.status == PRIMARY).sum() == (exact.status == PRIMARY).sum()
        assert_protected(rounded)


def test_top_and_bottom_coding():
    # With k = 3, 97 of 100 is top-coded at 95% and 6 of 120 bottom-coded at 5%. The coded numerators are withheld; the rates stay unpinned even
    # though the margins would give them back by subtraction.
    num = np.array([[97, 60, 6, 50], [55, 40, 30, 45]])
    den = np.array([[100, 120, 120, 100], [100, 90, 80, 95]])
    pr = protect(table(num, den), 3, top_code_percent=95, bottom_code_percent=5)
    assert pr.status[0, 0] == ROUNDED and pr.numerator[0, 0] is None
    assert pr.denominator[0, 0] == 100 and (pr.lower[0, 0], pr.upper[0, 0]) == (95.0, 100.0)
    assert pr.status[0, 2] == ROUNDED and (pr.lower[0, 2], pr.upper[0, 2]) == (0.0, 5.0)
    assert pr.proof.ok
    view = shown(pr)
    attacker = Attacker(pr.table, [view])
    baseline = Attacker(pr.table, [fully_suppressed(pr)])
    requirements = coded_requirements(pr.table, 3, 95, 5, pr.status)
    assert {labels for labels, *_ in requirements} >= {("d00", "d10"), ("d00", "d12")}
    for labels, quantity, lower, upper in requirements:
        low, high = attacker.interval(pr.table.dimensions, labels, quantity)
        floor, ceiling = baseline.interval(pr.table.dimensions, labels, quantity)
        assert low <= max(lower, floor) + 1e-6 and high >= min(upper, ceiling) - 1e-6
    assert {c.requirement.reason for c in pr.proof.checks} >= {"top_coded", "bottom_coded"}


def test_coding_applies_to_rates_only():
    pr = protect(table([97, 60]), 5, top_code_percent=95)
    assert pr.top_code_percent is None and (pr.status == FREE).all()
