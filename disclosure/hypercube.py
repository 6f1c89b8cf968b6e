"""First pass of secondary suppression: one hypercube per sensitive quantity (after GHMITER).

In a d-dimensional table with all margins, choosing for a target cell c one other index a_i
along every axis i spans a hypercube of 2^d corners. Moving the corners by +delta and -delta
in a checkerboard pattern keeps every line of the table balanced (two corners per line, with
opposite signs between two interior cells, and the same sign between a cell and its margin),
so if every corner is suppressed, the attacker cannot tell the true table from the moved one.
A hypercube *protects* a requirement of c when the move reaches the end of c's protection
interval without taking any corner outside what the attacker knows of it (counts >= 0,
numerator <= denominator, every quantity of a non-primary cell >= k, the small quantities of a
primary cell <= k - 1, a coded cell inside its code).

For each requirement we enumerate every hypercube through c (vectorized: one gather per corner
over all choices of the a_i), keep those whose capacity covers the requirement in both
directions (else each direction on its own), and take the cheapest, where a corner already
suppressed costs nothing and any other costs its population (so small interior cells are
preferred and margins avoided). A cube with a *reserved* corner (a headline margin of the table,
see :func:`disclosure.protection._tiers`) that is not already suppressed is never taken: in a
sparse table the cheapest cube is often the one through the totals (every corner a margin, all
moving up together), and taking it once makes the totals free for every later cube, so the
period totals and the grand total ended up suppressed although interior cells could protect
every small cell. A requirement no admissible cube meets is left to the linear programs of
:mod:`disclosure.protection`, which suppress a reserved cell only when nothing else protects.
A rate table offers two ways of moving a quantity: the numerator alone or the numerator and
denominator together (for the complement, the numerator down or the denominator up), so both
are tried. A requirement that an earlier move already meets (its cell was a corner of that
move, moved far enough) gets no cube of its own.

Each chosen move is a candidate *witness*: a point of the attacker's polytope that reaches the
end of the protection interval. The audit re-verifies every witness against the full model and
solves linear programs for anything the hypercubes did not settle; requirements no hypercube can
protect are left to the linear-programming pass in :mod:`disclosure.protection`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from disclosure.suppression import COMPLEMENT, DENOMINATOR, NUMERATOR

_INF = np.inf

# (ax, an): how the numerator and the denominator move with delta.
_X = (1.0, 0.0)
_N = (0.0, 1.0)
_XN = (1.0, 1.0)


def _moves(quantity: str, rate: bool) -> list[tuple[tuple[float, float], float]]:
    """(vector, sign at the target) pairs that move ``quantity`` up by delta."""
    if not rate:
        return [(_X, 1.0)]
    if quantity == NUMERATOR:
        return [(_X, 1.0), (_XN, 1.0)]
    if quantity == COMPLEMENT:
        return [(_X, -1.0), (_N, 1.0)]
    if quantity == DENOMINATOR:
        return [(_N, 1.0), (_XN, 1.0)]
    raise ValueError(quantity)


@dataclass
class Table:
    """One table (the release), flattened, with what each cell's status lets it move."""

    shape: tuple[int, ...]
    x: np.ndarray
    n: np.ndarray | None
    k: int
    primary: np.ndarray  # bool
    small: dict[str, np.ndarray]  # per quantity, bool: under k (primary cells only)
    immovable: np.ndarray  # bool: published elsewhere, or empty: no corner can sit there
    hidden: np.ndarray  # bool: suppressed so far
    numerator_hidden: np.ndarray  # bool: numerator withheld though the cell is published (coded)
    top: np.ndarray  # float percent, nan where not top-coded
    bottom: np.ndarray  # float percent, nan where not bottom-coded
    weight: np.ndarray  # float, cost of suppressing the cell
    # bool: cells no hypercube may suppress (the table's headline margins); a cube with such a
    # corner that is not already suppressed is inadmissible, and its need is left to the
    # perturbation programs, which suppress a reserved cell only when nothing else protects.
    reserved: np.ndarray | None = None
    # bool: the numerator (resp. denominator) of the cell is known exactly from elsewhere (an
    # earlier release published that count): a move may not change it.
    numerator_fixed: np.ndarray | None = None
    denominator_fixed: np.ndarray | None = None
    # Whether a withheld cell's status tells the attacker on which side of k it lies (primary:
    # under k, secondary: at least k). Backbone publishes one status for every withheld cell,
    # so a corner may move anywhere from 0; with statuses, only within what its status says.
    statuses: bool = True

    @property
    def rate(self) -> bool:
        return self.n is not None

    def capacity(self, vector: tuple[float, float], sign: float) -> np.ndarray:
        """Per cell, the largest delta the cell can move by ``sign * delta * vector``."""
        ax, an = vector
        x = self.x.astype(float)
        k = float(self.k) if self.statuses else 0.0
        cap = float(self.k - 1) if self.statuses else _INF
        lower_x = np.where(self.primary, 0.0, k)
        upper_x = np.where(self.small.get(NUMERATOR, self.primary), cap, _INF)
        constraints: list[tuple[np.ndarray, float]] = [
            (x - lower_x, sign * ax),
            (upper_x - x, -sign * ax),
        ]
        if self.n is not None:
            n = self.n.astype(float)
            c = n - x
            lower_c = np.where(self.primary, 0.0, k)
            upper_c = np.where(self.small[COMPLEMENT], cap, _INF)
            upper_n = np.where(self.small[DENOMINATOR], cap, _INF)
            constraints += [
                (c - lower_c, sign * (an - ax)),
                (upper_c - c, -sign * (an - ax)),
                (upper_n - n, -sign * an),
            ]
            if an == 0.0:
                # Only the numerator moves: a coded cell stays coded and must stay in its code.
                top = np.nan_to_num(self.top, nan=0.0)
                bottom = np.nan_to_num(self.bottom, nan=100.0)
                constraints += [
                    (np.where(np.isnan(self.top), _INF, 100 * x - top * n), sign * 100 * ax),
                    (np.where(np.isnan(self.bottom), _INF, bottom * n - 100 * x), -sign * 100 * ax),
                ]
        out = np.full(x.shape, _INF)
        for slack, slope in constraints:
            if slope < 0:
                out = np.minimum(out, np.maximum(slack, 0.0) / -slope)
        out[self.immovable] = 0.0
        if ax != 0.0 and self.numerator_fixed is not None:
            out[self.numerator_fixed] = 0.0
        if an != 0.0 and self.denominator_fixed is not None:
            out[self.denominator_fixed] = 0.0
        return out

    def cost(self, vector: tuple[float, float]) -> np.ndarray:
        """Per cell, the cost of making it a corner: nothing if already suppressed, infinite if
        reserved, else its weight."""
        free = self.hidden | (self.numerator_hidden if vector[1] == 0.0 else False)
        cost = np.where(free, 0.0, self.weight)
        if self.reserved is not None:
            cost[self.reserved & ~free] = _INF
        return cost


@dataclass(frozen=True)
class Move:
    """A checkerboard move of a hypercube: corners (flat), their signs, delta and vector."""

    corners: np.ndarray
    signs: np.ndarray
    delta: float
    vector: tuple[float, float]

    def apply(self, table: Table) -> tuple[np.ndarray, np.ndarray | None]:
        x = table.x.astype(float).copy()
        x[self.corners] += self.signs * self.delta * self.vector[0]
        if table.n is None:
            return x, None
        n = table.n.astype(float).copy()
        n[self.corners] += self.signs * self.delta * self.vector[1]
        return x, n


class _Cubes:
    """Every hypercube through one cell: corner indices and checkerboard parities."""

    def __init__(self, shape: tuple[int, ...], cell: int, blocked: np.ndarray) -> None:
        """``blocked``: cells that cannot move at all; an alternative index whose cell next to
        the target (on the target's line) is blocked spans no usable cube, so it is left out."""
        coords = np.unravel_index(cell, shape)
        d = len(shape)
        strides = [int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(d)]
        # Per axis, the target's own index (row 0) or each alternative (row 1), and the sign
        # a corner takes from that axis: + when one of the two indices is the margin.
        options: list[np.ndarray] = []
        signs: list[np.ndarray] = []
        for i, size in enumerate(shape):
            alts = np.delete(np.arange(size, dtype=np.int64), int(coords[i]))
            neighbours = cell + (alts - int(coords[i])) * strides[i]
            alts = alts[~blocked[neighbours]]
            at_margin = int(coords[i]) == size - 1
            options.append(np.vstack([np.full(alts.size, int(coords[i])), alts]) * strides[i])
            signs.append(
                np.vstack(
                    [np.ones(alts.size), np.where((alts == size - 1) != at_margin, 1.0, -1.0)]
                )
            )
        self.grid = tuple(o.shape[1] for o in options)
        # Bits of every corner position (2^d of them), most significant axis first.
        bits = np.array(list(itertools.product((0, 1), repeat=d)), dtype=np.int64).reshape(-1, d)
        flat = np.zeros((bits.shape[0], *self.grid), dtype=np.int64)
        parity = np.ones((bits.shape[0], *self.grid))
        for i in range(d):
            view = [bits.shape[0]] + [1] * d
            view[i + 1] = self.grid[i]
            flat = flat + options[i][bits[:, i]].reshape(view)
            parity = parity * signs[i][bits[:, i]].reshape(view)
        # (2^d, cubes): one row per corner position, one column per hypercube.
        self.corners = flat.reshape(bits.shape[0], -1)
        self.parities = parity.reshape(bits.shape[0], -1)
        self.positive = self.parities > 0
        self.count = int(np.prod(self.grid, dtype=np.int64)) if d else 0

    def move(self, choice: int, delta: float, sign: float, vector: tuple[float, float]) -> Move:
        corners = self.corners[:, choice].copy()
        signs = sign * self.parities[:, choice]
        return Move(corners, signs, delta, vector)


@dataclass(frozen=True)
class Need:
    """Move ``quantity`` of ``cell`` (flat index in the table) up by ``up`` and down by ``down``."""

    cell: int
    quantity: str
    up: float
    down: float


def _endpoint(table: Table, need: Need, direction: float) -> tuple[float, float] | None:
    """The vector taking the target straight to the end of its interval when the quantity
    cannot move alone: in a cell whose denominator is under k, reaching "k - 1 of k - 1"
    moves the numerator and the denominator by different amounts."""
    if table.n is None:
        return None
    i = need.cell
    x, n = float(table.x[i]), float(table.n[i])
    amount = need.up if direction > 0 else need.down
    if amount <= 0:
        return None
    cap_x = table.k - 1.0 if table.small[NUMERATOR][i] and table.statuses else _INF
    cap_n = table.k - 1.0 if table.small[DENOMINATOR][i] and table.statuses else _INF
    if need.quantity == NUMERATOR:
        x_end = x + direction * amount
        n_end = max(n, x_end)
    elif need.quantity == DENOMINATOR:
        n_end = n + direction * amount
        x_end = min(x, n_end)
    else:
        c_end = n - x + direction * amount
        x_end = max(0.0, min(n - c_end, cap_x))
        n_end = x_end + c_end
    if x_end < 0 or n_end < x_end or x_end > cap_x or n_end > cap_n:
        return None
    return ((x_end - x) / amount, (n_end - n) / amount)


def _evaluate(
    table: Table,
    cubes: _Cubes,
    caps: dict[tuple[tuple[float, float], float], np.ndarray],
    vector: tuple[float, float],
    sign: float,
    seen: dict[tuple[float, float], tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per hypercube: capacity toward ``sign``, capacity against it, and cost (``seen`` holds
    the results for this need's cubes, per vector)."""
    known = seen.get(vector)
    if known is None:
        for s in (1.0, -1.0):
            if (vector, s) not in caps:
                caps[(vector, s)] = table.capacity(vector, s)
        at_plus = caps[(vector, 1.0)][cubes.corners]
        at_minus = caps[(vector, -1.0)][cubes.corners]
        positive = cubes.positive
        known = (
            np.where(positive, at_plus, at_minus).min(axis=0),
            np.where(positive, at_minus, at_plus).min(axis=0),
            table.cost(vector)[cubes.corners].sum(axis=0),
        )
        seen[vector] = known
    up, down, cost = known
    return (up, down, cost) if sign > 0 else (down, up, cost)


def forced(table: Table, needs: Sequence[Need]) -> np.ndarray:
    """Reserved cells that must be suppressed whatever else is: a line certificate.

    Every line of the table keeps its sum (the cells along one dimension and their margin), for
    numerators, denominators and so for complements. Moving a quantity of a target cell by
    delta therefore needs the other cells of each of its lines to move by delta in total: the
    other interior cells against the target and the margin with it (or, for a margin target,
    its interior cells with it). Each cell can move only as far as its status allows (a
    published or secondary quantity stays at least k, a small one between 0 and k - 1; a
    published reserved cell not at all), so when a line's other cells cannot make up delta with
    its reserved cells held, and exactly one held cell of the line would, no protection of the
    release leaves that cell published: it is suppressed at once, before any hypercube, which
    can then use it instead of working around it (and suppressing interior cells for nothing).
    The capacities are generous (the statuses' bounds only), so the certificate never forces a
    cell that some protection could leave published.
    """
    out = np.zeros(table.x.shape, dtype=bool)
    if table.reserved is None or not table.shape:
        return out
    published = table.reserved & ~table.hidden & ~table.immovable
    if not published.any():
        return out
    shape = table.shape
    values = {NUMERATOR: table.x.astype(float)}
    if table.n is not None:
        n = table.n.astype(float)
        values[DENOMINATOR] = n
        values[COMPLEMENT] = n - values[NUMERATOR]
    coords = np.unravel_index(np.arange(table.x.size), shape)
    for quantity, v in values.items():
        mine = [need for need in needs if need.quantity == quantity]
        if not mine:
            continue
        # A coded cell publishes its denominator only: its numerator (and complement) can move.
        held = published & ~(table.numerator_hidden if quantity != DENOMINATOR else False)
        small = table.small.get(quantity, np.zeros(v.shape, dtype=bool))
        if table.statuses:
            lower = np.where(table.primary, 0.0, float(table.k))
            upper = np.where(small, float(table.k - 1), _INF)
        else:
            lower, upper = np.zeros(v.shape), np.full(v.shape, _INF)
        potential = {
            -1.0: np.where(table.immovable, 0.0, np.maximum(v - lower, 0.0)),
            1.0: np.where(table.immovable, 0.0, np.maximum(upper - v, 0.0)),
        }
        for axis, size in enumerate(shape):
            held_count = held.reshape(shape).sum(axis=axis)
            for need in mine:
                point = tuple(int(c[need.cell]) for c in coords)
                if held_count[point[:axis] + point[axis + 1 :]] == 0:
                    continue
                members = np.ravel_multi_index(
                    tuple(
                        np.full(size, p) if i != axis else np.arange(size)
                        for i, p in enumerate(point)
                    ),
                    shape,
                )
                at_margin = point[axis] == size - 1
                margin = int(members[-1])
                others = members[members != need.cell]
                for direction, amount in ((1.0, need.up), (-1.0, need.down)):
                    if amount <= 0:
                        continue
                    # How each other cell of the line moves: with the target if exactly one
                    # of the two is the margin, against it otherwise.
                    with_target = (others == margin) != at_margin
                    side = np.where(with_target, direction, -direction)
                    reach = np.where(side > 0, potential[1.0][others], potential[-1.0][others])
                    room = float(reach[~held[others]].sum())
                    if room >= amount - 1e-9:
                        continue
                    helpers = np.flatnonzero(held[others] & (reach > 0))
                    if helpers.size == 1 and room + reach[helpers[0]] >= amount - 1e-9:
                        out[others[helpers[0]]] = True
    return out


def choose_moves(table: Table, needs: Sequence[Need]) -> list[Move]:
    """Suppress hypercube corners (in ``table.hidden``) for each need; returns the moves."""
    moves: list[Move] = []
    if not table.shape:
        return moves
    caps: dict[tuple[tuple[float, float], float], np.ndarray] = {}
    cubes_of: dict[int, _Cubes] = {}
    # Per quantity, how far the moves chosen so far take each cell up and down: a need that
    # an earlier move already meets (its target was a corner of that move) needs no cube.
    reached = {
        (q, direction): np.zeros(table.x.shape)
        for q in (NUMERATOR, DENOMINATOR, COMPLEMENT)
        for direction in (1.0, -1.0)
    }
    for original in needs:
        need = Need(
            original.cell,
            original.quantity,
            0.0
            if reached[(original.quantity, 1.0)][original.cell] >= original.up - 1e-9
            else original.up,
            0.0
            if reached[(original.quantity, -1.0)][original.cell] >= original.down - 1e-9
            else original.down,
        )
        if need.up <= 0 and need.down <= 0:
            continue
        cubes = cubes_of.get(need.cell)
        if cubes is None:
            cubes = cubes_of[need.cell] = _Cubes(table.shape, need.cell, table.immovable)
        if cubes.count == 0:
            continue
        best: tuple[float, list[Move]] | None = None
        singles: dict[float, tuple[float, Move]] = {}
        seen: dict[tuple[float, float], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

        for vector, sign in _moves(need.quantity, table.rate):
            up, down, cost = _evaluate(table, cubes, caps, vector, sign, seen)
            both = (up >= need.up - 1e-9) & (down >= need.down - 1e-9) & np.isfinite(cost)
            if np.any(both):
                i = _cheapest(cost, both, np.minimum(up, down))
                if best is None or cost[i] < best[0]:
                    chosen = [cubes.move(i, need.up, sign, vector)] if need.up > 0 else []
                    if need.down > 0:
                        chosen.append(cubes.move(i, need.down, -sign, vector))
                    best = (float(cost[i]), chosen)
            _single(singles, need, cubes, 1.0, up, cost, sign, vector)
            _single(singles, need, cubes, -1.0, down, cost, -sign, vector)
        for direction in (1.0, -1.0):
            vector_end = _endpoint(table, need, direction)
            if vector_end is not None and vector_end not in [
                v for v, _ in _moves(need.quantity, True)
            ]:
                toward, _, cost = _evaluate(table, cubes, caps, vector_end, 1.0, seen)
                _single(singles, need, cubes, direction, toward, cost, 1.0, vector_end)
        chosen_moves: list[Move]
        if best is not None and best[0] <= sum(c for c, _ in singles.values()):
            chosen_moves = best[1]
        else:
            chosen_moves = [m for _, m in singles.values()]
        for move in chosen_moves:
            if move.vector[1] == 0.0 and table.rate:
                # A numerator-only move leaves a coded corner coded (its numerator is withheld).
                table.hidden[move.corners[~table.numerator_hidden[move.corners]]] = True
            else:
                table.hidden[move.corners] = True
            moves.append(move)
            step = move.signs * move.delta
            dx, dn = step * move.vector[0], step * move.vector[1]
            for quantity, shift in ((NUMERATOR, dx), (DENOMINATOR, dn), (COMPLEMENT, dn - dx)):
                for direction in (1.0, -1.0):
                    np.maximum.at(reached[(quantity, direction)], move.corners, direction * shift)
    return moves


def _single(
    singles: dict[float, tuple[float, Move]],
    need: Need,
    cubes: _Cubes,
    direction: float,
    capacity: np.ndarray,
    cost: np.ndarray,
    move_sign: float,
    vector: tuple[float, float],
) -> None:
    """Keep the cheapest hypercube that covers one direction of a need on its own."""
    amount = need.up if direction > 0 else need.down
    ok = (capacity >= amount - 1e-9) & np.isfinite(cost)
    if amount > 0 and np.any(ok):
        i = _cheapest(cost, ok, capacity)
        if direction not in singles or cost[i] < singles[direction][0]:
            singles[direction] = (float(cost[i]), cubes.move(i, amount, move_sign, vector))


def _cheapest(cost: np.ndarray, ok: np.ndarray, capacity: np.ndarray) -> int:
    """Index of the cheapest admissible cube, the roomiest among equally cheap ones."""
    masked = np.where(ok, cost, _INF)
    low = masked.min()
    tied = np.flatnonzero(masked <= low + 1e-9)
    return int(tied[np.argmax(capacity[tied])])
