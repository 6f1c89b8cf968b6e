"""Margins (totals) are suppressed only when the table cannot be protected without them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from disclosure.attacker import Facts, Geometry, Knowledge, Model
from disclosure.cube import Cube
from disclosure.hypercube import Need, Table, choose_moves, forced
from disclosure.protection import _levels, _tiers, protect
from disclosure.suppression import FREE, PRIMARY, SECONDARY, sensitive
from tests.aggregation.tables import table
from tests.aggregation.test_protection import assert_protected


def headline(pr) -> np.ndarray:
    """Suppressed one-dimensional margins and grand total of a 3-dimensional release."""
    status = pr.status
    level = sum(np.indices(status.shape)[a] == status.shape[a] - 1 for a in range(status.ndim))
    return (level >= status.ndim - 1) & (status == SECONDARY)


def suppressed(pr) -> set[tuple[int, ...]]:
    return {
        tuple(int(i) for i in ix) for ix in zip(*np.nonzero(pr.status == SECONDARY), strict=True)
    }


def sparse_table(seed: int) -> Cube:
    """A small 3-dimensional rate table where most cells are under k = 5."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(2, 5, size=3))
    den = rng.poisson(rng.lognormal(np.log(6.0), 1.0, size=shape)).astype(np.int64)
    return table(rng.binomial(den, rng.beta(2, 2, size=shape)), den)


def test_totals_stay_published_when_interior_cells_can_protect():
    # k = 5; (0, 1) = 2 and (1, 0) = 3 are small. The cheapest cubes by population ran through
    # the column totals 9 and 31; the interior alone protects both cells.
    pr = protect(table([[6, 2, 7], [3, 29, 26]]), 5)
    assert pr.status[0, 1] == PRIMARY and pr.status[1, 0] == PRIMARY
    assert all(s == FREE for s in pr.status[-1]), pr.status  # column totals, grand total
    assert all(s == FREE for s in pr.status[:, -1])  # row totals
    assert suppressed(pr) == {(0, 0), (0, 2), (1, 1), (1, 2)}
    # By hand, with a = (0, 1) and b = (1, 0): a withheld cell says nothing, so every interior
    # cell is only >= 0. a + (0, 0) + (0, 2) = 15 and a + (1, 1) = 31: a reaches 0 and 15;
    # b + (0, 0) = 9: b reaches 0 and 9. Nothing is narrowed inside 0..4.
    attacker = assert_protected(pr)
    assert attacker.interval(("d0", "d1"), ("d00", "d11"), "numerator") == pytest.approx((0, 15))
    assert attacker.interval(("d0", "d1"), ("d01", "d10"), "numerator") == pytest.approx((0, 9))


def test_totals_next_to_small_cells_stay_published_when_withheld_cells_say_nothing():
    # (2, 1) = 2 and (3, 1) = 2 under k = 5, with row totals 8 and 7. Were a withheld partner
    # known to be at least k, the small cells could not exceed 3 and 2 and the totals would have
    # to go. A withheld cell says nothing, so withholding the partners 6 and 5 is enough: with the
    # column total, the two small cells sum to 4 and each ranges over 0..4; every total stays
    # published.
    pr = protect(table([[23, 24], [5, 6], [6, 2], [5, 2]]), 5)
    assert suppressed(pr) == {(2, 0), (3, 0)}
    assert not headline(pr).any()
    attacker = assert_protected(pr)
    assert attacker.interval(("d0", "d1"), ("d02", "d11"), "numerator") == pytest.approx((0, 4))


def test_line_certificate_names_only_necessary_totals():
    cube = table([[23, 24], [5, 6], [6, 2], [5, 2]])
    x = cube.numerator.ravel()
    small = sensitive(x, None, 5)
    shape = cube.shape
    reserved = _tiers(_levels(shape), 2)[0]
    hc = Table(
        shape=shape,
        x=x,
        n=None,
        k=5,
        primary=small["numerator"],
        small=small,
        immovable=np.zeros(x.shape, dtype=bool),
        hidden=small["numerator"].copy(),
        numerator_hidden=np.zeros(x.shape, dtype=bool),
        top=np.full(x.shape, np.nan),
        bottom=np.full(x.shape, np.nan),
        weight=1.0 + x,
        reserved=reserved,
    )
    needs = [Need(int(i), "numerator", 4.0 - x[i], float(x[i])) for i in np.flatnonzero(hc.primary)]
    must = forced(hc, needs)
    assert set(np.flatnonzero(must)) == {
        np.ravel_multi_index((2, 2), shape),
        np.ravel_multi_index((3, 2), shape),
    }
    # Down to 0 needs nothing of the totals: the partners can grow.
    assert not forced(hc, [Need(n.cell, n.quantity, 0.0, n.down) for n in needs]).any()
    # Without reserved cells nothing is forced.
    hc.reserved = None
    assert not forced(hc, needs).any()


def test_no_hypercube_takes_an_unsuppressed_reserved_corner():
    cube = table([[3, 5, 5], [5, 40, 40], [5, 40, 40]])
    x = cube.numerator.ravel()
    small = sensitive(x, None, 5)
    reserved = _tiers(_levels(cube.shape), 2)[0]
    hc = Table(
        shape=cube.shape,
        x=x,
        n=None,
        k=5,
        primary=small["numerator"],
        small=small,
        immovable=np.zeros(x.shape, dtype=bool),
        hidden=small["numerator"].copy(),
        numerator_hidden=np.zeros(x.shape, dtype=bool),
        top=np.full(x.shape, np.nan),
        bottom=np.full(x.shape, np.nan),
        weight=1.0 + x,
        reserved=reserved,
    )
    moves = choose_moves(hc, [Need(0, "numerator", 1.0, 3.0)])
    assert moves and not any(reserved[move.corners].any() for move in moves)
    assert all(move.corners[0] == 0 for move in moves)  # the first corner is the target
    # Down to 0: an interior rectangle. Up to 4: the target's row and column partners are at
    # exactly k, so only cubes through the totals could balance it, and none is taken.
    assert [float(move.signs[0] * move.delta) for move in moves] == [-3.0]


def test_levels_and_tiers():
    levels = _levels((3, 4))
    assert levels.reshape(3, 4)[0, 0] == 0 and levels.reshape(3, 4)[2, 3] == 2
    assert levels.reshape(3, 4)[2, 0] == 1 and levels.reshape(3, 4)[0, 3] == 1
    tiers = _tiers(_levels((3, 4, 5)), 3)
    assert [int(t.sum()) for t in tiers] == [2 + 3 + 4 + 1, 1, 0]
    assert [int(t.sum()) for t in _tiers(_levels((3, 4)), 2)] == [2 + 3 + 1, 1, 0]
    assert [int(t.sum()) for t in _tiers(_levels((5,)), 1)] == [1, 0]
    assert [int(t.sum()) for t in _tiers(_levels(()), 0)] == [0]


@pytest.mark.parametrize("seed", [2, 34, 40])
def test_sparse_tables_meet_every_interval_in_full(seed):
    """Tables where a status "at least k" on withheld cells would narrow both ends of a small
    cell's range (they once needed limited intervals): withheld cells say nothing, so every
    small quantity keeps its whole interval 0..k-1."""
    pr = protect(sparse_table(seed), 5)
    assert not any(c.limited for c in pr.proof.checks)
    assert_protected(pr)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_sparse_tables_keep_their_headline_margins(seed):
    pr = protect(sparse_table(seed), 5)
    assert not headline(pr).any()
    assert_protected(pr)


def test_a_slice_of_the_polytope_gives_points_of_the_whole():
    cube = table(
        [[1, 4, 30, 2], [0, 20, 6, 9], [12, 3, 25, 14]],
        [[6, 9, 40, 9], [3, 30, 8, 20], [20, 8, 40, 30]],
    )
    pr = protect(cube, 5)
    geometry = Geometry(cube.shape, True)
    facts = Facts(geometry.nvars)
    hidden = (pr.status == PRIMARY) | (pr.status == SECONDARY)
    e = np.arange(geometry.size)
    shown_cells = e[~hidden.ravel()]
    x, n = cube.numerator.ravel().astype(float), cube.denominator.ravel().astype(float)
    facts.within(geometry.x(shown_cells), x[shown_cells], x[shown_cells])
    facts.within(geometry.n(shown_cells), n[shown_cells], n[shown_cells])
    facts.complement(geometry.x(e), geometry.n(e), 0.0, np.inf)
    knowledge = Knowledge.build(geometry.space, facts, np.concatenate([x, n]))
    whole = Model(knowledge)
    numerators = np.arange(geometry.nvars) < geometry.size
    piece = Model(knowledge, hold=~numerators)
    assert piece.sliced and not whole.sliced
    assert piece.rows.shape[0] < whole.rows.shape[0]
    assert np.all(piece.local[~numerators] < 0)  # denominators held at their true values
    for var in piece.unknown:
        for maximize in (True, False):
            opt = piece.optimize({int(var): 1.0}, maximize)
            if opt.point is not None:
                assert knowledge.feasible(opt.point)
                reference = whole.optimize({int(var): 1.0}, maximize)
                # A slice never reaches further than the whole polytope.
                assert (
                    (opt.value <= reference.value + 1e-6)
                    if maximize
                    else (opt.value >= reference.value - 1e-6)
                )


def test_moves_are_verified_like_points():
    rng = np.random.default_rng(5)
    cube = table(rng.integers(0, 30, size=(3, 4)))
    geometry = Geometry(cube.shape, False)
    facts = Facts(geometry.nvars)
    x = cube.numerator.ravel().astype(float)
    facts.at_least(np.flatnonzero(x >= 5), 5)
    facts.at_most(np.flatnonzero(x < 5), 4)
    knowledge = Knowledge.build(geometry.space, facts, x)
    moves = sp.random(40, geometry.nvars, density=0.1, random_state=3, format="csr")
    moves.data = np.round((moves.data - 0.5) * 8)
    # Balanced moves too: a checkerboard rectangle keeps every line.
    rect = np.zeros(geometry.nvars)
    for (i, j), s in (((0, 0), 1), ((0, 1), -1), ((1, 0), -1), ((1, 1), 1)):
        rect[np.ravel_multi_index((i, j), cube.shape)] = s
    moves = sp.vstack([moves, sp.csr_matrix(rect), sp.csr_matrix(-rect)], format="csr")
    expected = [knowledge.feasible(x + moves[r].toarray().ravel()) for r in range(moves.shape[0])]
    assert list(knowledge.feasible_moves(moves)) == expected
    assert any(expected) and not all(expected)
