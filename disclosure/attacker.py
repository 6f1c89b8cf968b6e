"""The attacker's model of published tables, and the audit of suppressed cells.

Everything is laid out in one *space* of counts (:class:`Space`): for a single release, the
numerator and (for rates) the denominator of every cell of its table with all margins; for the
joint audit of a population (:mod:`aggregation.population`), every cell of the population's
joint cube, the finest cross-classification of every attribute any release of it publishes,
with all its margins. Each published table is a set of variables of the space: a count is one
variable, a rate a numerator and a denominator variable. The unknowns are the true counts.

What the attacker knows (``Facts`` -> ``Knowledge``), all of it linear:

* every published value: an exact count is a fixed variable, a rounded count an interval;
* additivity: along every line of a cube (the cells of one category set plus their aggregate),
  ``sum(cells) - aggregate`` equals the number of people counted in more than one of the cells.
  Distinct-person counts are not additive when a person falls in two cells (a child in two
  school years), so we assume the worst case: that the attacker knows that overlap exactly.
  It is zero whenever each person falls in one cell, which makes this plain additivity. When
  it is not zero, the attacker also knows that no cell exceeds its aggregate;
* counts are non-negative, and a numerator counts a subset of its denominator (0 <= x <= n);
* what the published statuses reveal. A ``secondary`` (or published) cell of a table with
  threshold k has every quantity at least k. A ``primary`` cell has *some* quantity under k
  (the numerator, the complement n - x, or the denominator); the attacker cannot tell which in
  a rate table, so his knowledge is a union of polytopes. We audit against the polytope of the
  true case, with every quantity that really is under k capped at k - 1: it lies inside that
  union, so every interval we prove for it holds a fortiori for the attacker;
* a coded cell (published as ">= 95%") satisfies 100 x >= 95 n (and likewise at the bottom);
* a structural zero (a combination the agreement declares impossible) is 0.

Facts are bounds of single variables and rows over two variables (the complement n - x of a
rate cell, a code); a fact stated by several releases is one row with the tightest bounds.

The audit (``Model.optimize``, ``certify``): for each requirement (a sensitive quantity q, a
linear form over the space, and its protection interval [lo, hi], see
:mod:`disclosure.protection`) the attacker's linear programs min q and max q over the polytope
must reach lo and hi. The programs run with HiGHS on the unknown variables only (published
values are constants), split into connected components of the constraint graph, so each program
is as small and sparse as the facts allow. A program is skipped only when a *witness* already
settles that side: a point verified to satisfy every constraint of the model
(``Knowledge.feasible``) at which q <= lo (resp. >= hi) proves min <= lo (resp. max >= hi)
exactly. Witnesses come from earlier programs' optimal points and from the perturbations the
suppression heuristic used; each is re-verified against the current model before it is used, so
the audit does not trust the heuristic (``Knowledge.feasible_moves`` checks the hypercube moves
as sparse displacements from the true counts). ``exact=True`` solves every program regardless.

Most sides are settled in bulk (``ReachedRanges.sweep``): with the default protection level a side's
goal is the bound the model itself puts on its quantity (0 or k - 1), so a program optimizing
the sum of many quantities stops each at its goal, and its optimum settles every side it takes
there. Sweeps may run on slices of the polytope first (``Model(knowledge, hold=...)``: in a
single rate table, numerators alone with the denominators at their true values, then the other
way round), whose points are points of the whole polytope and whose programs are smaller.

The model is the linear relaxation used by tau-ARGUS and sdcTable: an attacker who also uses
integrality can, in tables of three or more dimensions, occasionally obtain a slightly tighter
interval than the linear one.

Why our own code rather than a library: tau-ARGUS (Java/C++) and sdcTable (R) audit one table
at a time and know nothing of distinct-person overlap, status knowledge or of everything else
published from the same records; the linear algebra and the solver are SciPy's and HiGHS's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from disclosure.lp import OPTIMAL, UNBOUNDED, Program
from disclosure.suppression import COMPLEMENT, DENOMINATOR, NUMERATOR

TOL = 1e-6  # feasibility tolerance on counts (whole people), far below any privacy-relevant gap
_INF = np.inf

Form = tuple[tuple[int, float], ...]  # a linear form: (variable, coefficient), sorted


def form_of(terms: dict[int, float]) -> Form:
    """The canonical (sorted) form of a linear combination of variables."""
    return tuple(sorted((int(v), float(c)) for v, c in terms.items() if c != 0.0))


class ModelInconsistent(ValueError):
    """The published facts contradict the true counts: the tables are not of the same data."""


@dataclass(frozen=True)
class Space:
    """The counts of the model and the relations that hold whatever is published.

    ``lines`` has one row per line of a cube: +1 on the members of a category set, -1 on their
    aggregate (a margin, or a group such as the submissions of a data version). ``coords`` gives
    each variable its cube coordinates (one column per axis); it only serves to group the sides
    of a sweep so that no two share a line. ``slices`` are optional masks of variables that may
    be held at their true values for cheaper sweeps (each slice's points are points of the
    whole polytope).
    """

    nvars: int
    lines: sp.csr_matrix
    coords: np.ndarray
    slices: tuple[np.ndarray, ...] = ()
    # Lines implied by ``lines`` (left out of the programs); where someone is counted twice
    # along one, its "no member tops the aggregate" rows are still real knowledge.
    implied: sp.csr_matrix | None = None
    # Per line, a member that is in no other line and never published (a "rest" category):
    # a displacement that unbalances the line is made whole there (-1: no such member).
    absorber: np.ndarray | None = None

    def lift(self, moves: sp.csr_matrix) -> sp.csr_matrix:
        """Complete displacements (rows) given on some variables into displacements that keep
        every line balanced, through the lines' absorbers; a row that unbalances a line without
        one is left as it is (the verification of witnesses then rejects it)."""
        if moves.shape[0] == 0:
            return moves
        imbalance = sp.coo_matrix(moves @ self.lines.T)
        nonzero = np.abs(imbalance.data) > 1e-9
        rows, lines, values = (
            imbalance.row[nonzero],
            imbalance.col[nonzero],
            imbalance.data[nonzero],
        )
        if rows.size == 0:
            return moves
        absorber = self.absorber if self.absorber is not None else np.full(self.lines.shape[0], -1)
        target = absorber[lines]
        ok = target >= 0
        correction = sp.csr_matrix((-values[ok], (rows[ok], target[ok])), shape=moves.shape)
        return sp.csr_matrix(moves + correction)

    @cached_property
    def all_lines(self) -> sp.csr_matrix:
        if self.implied is None or self.implied.shape[0] == 0:
            return self.lines
        return sp.vstack([self.lines, self.implied], format="csr")

    @cached_property
    def line_parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(line of each member entry, member variable, aggregate variable of its line), over
        every line, implied ones included."""
        coo = self.all_lines.tocoo()
        member = coo.data > 0
        aggregate_of = np.full(self.all_lines.shape[0], -1, dtype=np.int64)
        aggregate_of[coo.row[~member]] = coo.col[~member]
        rows = coo.row[member]
        return rows, coo.col[member], aggregate_of[rows]


def cube_lines(shape: tuple[int, ...]) -> sp.csr_matrix:
    """The lines of a dense cube whose last index on each axis is the total of the others."""
    size = int(np.prod(shape, dtype=np.int64))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    flat = np.arange(size).reshape(shape)
    start = 0
    for axis, length in enumerate(shape):
        cells = np.moveaxis(flat, axis, -1).reshape(-1, length)
        count = cells.shape[0]
        rows.append(np.repeat(np.arange(start, start + count), length))
        cols.append(cells.ravel())
        signs = np.ones(length)
        signs[-1] = -1.0
        vals.append(np.tile(signs, count))
        start += count
    if not rows:
        return sp.csr_matrix((0, size))
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(start, size)
    )


@dataclass(frozen=True)
class Geometry:
    """One table with all its margins as a space: a numerator variable per cell and, for a rate
    table, a denominator variable per cell (numerators first)."""

    shape: tuple[int, ...]
    rate: bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nvars(self) -> int:
        return self.size * (2 if self.rate else 1)

    @cached_property
    def space(self) -> Space:
        lines = cube_lines(self.shape)
        coords = np.indices(self.shape).reshape(len(self.shape), self.size).T
        if not self.rate:
            return Space(self.size, lines, coords)
        both = sp.block_diag([lines, lines], format="csr")
        numerators = np.arange(self.nvars) < self.size
        return Space(self.nvars, both, np.vstack([coords, coords]), (~numerators, numerators))

    def x(self, cell: int | np.ndarray) -> np.ndarray:
        return np.asarray(cell, dtype=np.int64)

    def n(self, cell: int | np.ndarray) -> np.ndarray:
        if not self.rate:
            raise ValueError("a count table has only numerators")
        return self.size + np.asarray(cell, dtype=np.int64)

    def var(self, cell: int, quantity: str) -> dict[int, float]:
        """The linear form of a quantity of a cell over the model's variables."""
        if quantity == NUMERATOR:
            return {cell: 1.0}
        if not self.rate:
            raise ValueError("a count table has only numerators")
        if quantity == DENOMINATOR:
            return {self.size + cell: 1.0}
        if quantity == COMPLEMENT:
            return {self.size + cell: 1.0, cell: -1.0}
        raise ValueError(f"unknown quantity {quantity}")


class Facts:
    """What has been published about the counts, accumulated over tables.

    Bounds of single variables, and rows ``a * v[i] + b * v[j]`` with bounds (complements and
    codes); the same row stated twice keeps the tighter bounds.
    """

    def __init__(self, nvars: int) -> None:
        self.nvars = nvars
        self.lb = np.zeros(nvars)
        self.ub = np.full(nvars, _INF)
        self._pairs: list[tuple[np.ndarray, ...]] = []

    def within(self, variables: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float) -> None:
        variables = np.asarray(variables, dtype=np.int64)
        if variables.size == 0:
            return
        np.maximum.at(self.lb, variables, np.broadcast_to(lo, variables.shape).astype(float))
        np.minimum.at(self.ub, variables, np.broadcast_to(hi, variables.shape).astype(float))

    def at_least(self, variables: np.ndarray, lo: np.ndarray | float) -> None:
        self.within(variables, lo, _INF)

    def at_most(self, variables: np.ndarray, hi: np.ndarray | float) -> None:
        self.within(variables, 0.0, hi)

    def pair(
        self,
        first: np.ndarray,
        second: np.ndarray,
        a: np.ndarray | float,
        b: np.ndarray | float,
        lo: np.ndarray | float,
        hi: np.ndarray | float,
    ) -> None:
        """``lo <= a * v[first] + b * v[second] <= hi``, elementwise."""
        first = np.asarray(first, dtype=np.int64)
        if first.size == 0:
            return
        shape = first.shape
        self._pairs.append(
            (
                first,
                np.asarray(second, dtype=np.int64),
                np.broadcast_to(a, shape).astype(float),
                np.broadcast_to(b, shape).astype(float),
                np.broadcast_to(lo, shape).astype(float),
                np.broadcast_to(hi, shape).astype(float),
            )
        )

    def complement(
        self, x: np.ndarray, n: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float
    ) -> None:
        """``lo <= n - x <= hi`` (the people of the denominator outside the numerator)."""
        self.pair(x, n, -1.0, 1.0, lo, hi)

    def coded_top(self, x: np.ndarray, n: np.ndarray, percent: np.ndarray | float) -> None:
        """``100 x >= percent n``."""
        self.pair(x, n, 100.0, -np.asarray(percent, dtype=float), 0.0, _INF)

    def coded_bottom(self, x: np.ndarray, n: np.ndarray, percent: np.ndarray | float) -> None:
        """``100 x <= percent n``."""
        self.pair(x, n, 100.0, -np.asarray(percent, dtype=float), -_INF, 0.0)

    def pairs(self) -> tuple[np.ndarray, ...]:
        """The distinct rows, each with its tightest bounds: (first, second, a, b, lo, hi)."""
        if not self._pairs:
            empty = np.zeros(0)
            return (empty.astype(np.int64), empty.astype(np.int64), empty, empty, empty, empty)
        first, second, a, b, lo, hi = (
            np.concatenate(parts) for parts in zip(*self._pairs, strict=True)
        )
        keys = np.column_stack([first, second, a, b])
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        lows = np.full(unique.shape[0], -_INF)
        highs = np.full(unique.shape[0], _INF)
        np.maximum.at(lows, inverse, lo)
        np.minimum.at(highs, inverse, hi)
        return (
            unique[:, 0].astype(np.int64),
            unique[:, 1].astype(np.int64),
            unique[:, 2],
            unique[:, 3],
            lows,
            highs,
        )


@dataclass
class Knowledge:
    """The attacker's polytope: ``lb <= v <= ub`` and ``row_lb <= rows @ v <= row_ub``."""

    space: Space
    truth: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    rows: sp.csr_matrix
    row_lb: np.ndarray
    row_ub: np.ndarray
    row_of: dict[Form, int] = field(default_factory=dict)  # two-variable fact rows

    @property
    def nvars(self) -> int:
        return self.space.nvars

    @classmethod
    def build(cls, space: Space, facts: Facts, truth: np.ndarray) -> Knowledge:
        truth = np.asarray(truth, dtype=float).ravel()
        nvars = space.nvars
        lines = space.lines
        blocks: list[sp.csr_matrix] = []
        los: list[np.ndarray] = []
        his: list[np.ndarray] = []
        overlap = lines @ truth
        blocks.append(lines)
        los.append(overlap)
        his.append(overlap.copy())
        over = np.abs(space.all_lines @ truth) > 0.5
        if np.any(over):
            # Someone is in two members of these lines: the attacker knows no member tops its
            # aggregate.
            rows, members, aggregates = space.line_parts
            keep = over[rows]
            r = np.arange(int(keep.sum()))
            m = sp.csr_matrix(
                (
                    np.concatenate([np.ones(r.size), -np.ones(r.size)]),
                    (np.concatenate([r, r]), np.concatenate([members[keep], aggregates[keep]])),
                ),
                shape=(r.size, nvars),
            )
            blocks.append(m)
            los.append(np.full(r.size, -_INF))
            his.append(np.zeros(r.size))
        first, second, a, b, lo, hi = facts.pairs()
        start = sum(block.shape[0] for block in blocks)
        row_of: dict[Form, int] = {}
        if first.size:
            r = np.arange(first.size)
            blocks.append(
                sp.csr_matrix(
                    (
                        np.concatenate([a, b]),
                        (np.concatenate([r, r]), np.concatenate([first, second])),
                    ),
                    shape=(first.size, nvars),
                )
            )
            los.append(lo)
            his.append(hi)
            for i in range(first.size):
                row_of[form_of({int(first[i]): float(a[i]), int(second[i]): float(b[i])})] = (
                    start + i
                )
        rows = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, nvars))
        knowledge = cls(
            space=space,
            truth=truth,
            lb=facts.lb.copy(),
            ub=facts.ub.copy(),
            rows=rows,
            row_lb=np.concatenate(los) if los else np.zeros(0),
            row_ub=np.concatenate(his) if his else np.zeros(0),
            row_of=row_of,
        )
        if not knowledge.feasible(truth):
            raise ModelInconsistent(
                "the published facts do not hold for the true counts; the tables are not of the"
                " same data"
            )
        return knowledge

    def feasible(self, point: np.ndarray, tol: float = TOL) -> bool:
        """Whether ``point`` satisfies every constraint of the model (a verified witness)."""
        if np.any(point < self.lb - tol) or np.any(point > self.ub + tol):
            return False
        values = self.rows @ point
        return bool(np.all(values >= self.row_lb - tol) and np.all(values <= self.row_ub + tol))

    def feasible_moves(self, moves: sp.csr_matrix, tol: float = TOL) -> np.ndarray:
        """Which rows of ``moves`` (sparse displacements from the true counts) lead to points
        of the polytope: only the bounds of the moved variables and the rows they touch can
        fail, since the true counts satisfy every constraint."""
        ok = np.ones(moves.shape[0], dtype=bool)
        coo = sp.coo_matrix(moves)
        coo.sum_duplicates()
        value = self.truth[coo.col] + coo.data
        bad = (value < self.lb[coo.col] - tol) | (value > self.ub[coo.col] + tol)
        ok[coo.row[bad]] = False
        base = self.rows @ self.truth
        shifted = sp.coo_matrix(moves @ self.rows.T)
        value = base[shifted.col] + shifted.data
        bad = (value < self.row_lb[shifted.col] - tol) | (value > self.row_ub[shifted.col] + tol)
        ok[shifted.row[bad]] = False
        return ok


@dataclass
class _Component:
    variables: np.ndarray  # model variable ids
    rows: np.ndarray  # reduced row ids
    program: Program


@dataclass(frozen=True)
class Optimum:
    value: float
    point: np.ndarray | None  # a feasible point of the whole model at the optimum
    status: str  # "optimal", "unbounded", "fixed" (the quantity is a published constant), "failed"


class Model:
    """The linear programs of the attacker over the unknown variables of ``knowledge``."""

    def __init__(self, knowledge: Knowledge, hold: np.ndarray | None = None) -> None:
        """``hold`` (bool per variable) restricts the model to the points where those variables
        keep their true values: a slice of the attacker's polytope, so each of its points is a
        point of the whole polytope (a witness), found by smaller programs. A row left with a
        single unknown variable then becomes a bound of that variable."""
        self.knowledge = knowledge
        kn = knowledge
        unknown = kn.ub - kn.lb > 1e-9
        self.sliced = hold is not None
        if hold is not None:
            unknown &= ~hold
        self.unknown = np.flatnonzero(unknown)
        fixed = ~unknown
        self.base = kn.truth.copy()
        published = fixed & (kn.ub - kn.lb <= 1e-9)
        self.base[published] = kn.lb[published]
        self.local = np.full(kn.nvars, -1, dtype=np.int64)
        self.local[self.unknown] = np.arange(self.unknown.size)
        cols = kn.rows.tocsc()
        shift = cols[:, np.flatnonzero(fixed)] @ self.base[fixed]
        reduced = cols[:, self.unknown].tocsr()
        touched = np.diff(reduced.indptr) > 0
        untouched = ~touched
        if np.any(shift[untouched] < kn.row_lb[untouched] - TOL) or np.any(
            shift[untouched] > kn.row_ub[untouched] + TOL
        ):
            raise ModelInconsistent("published values contradict each other")
        keep = np.flatnonzero(touched)
        self.row_position = np.full(kn.rows.shape[0], -1, dtype=np.int64)
        self.row_position[keep] = np.arange(keep.size)
        self.row_shift = shift[keep]
        self.rows = reduced[keep]
        self.row_lb = kn.row_lb[keep] - shift[keep]
        self.row_ub = kn.row_ub[keep] - shift[keep]
        self.var_lb = kn.lb[self.unknown]
        self.var_ub = kn.ub[self.unknown]
        if hold is not None:
            self._bound_singletons()
        m, u = self.rows.shape
        if u:
            pattern = sp.csr_matrix(
                (np.ones(self.rows.nnz), self.rows.indices, self.rows.indptr), shape=(m, u)
            )
            graph = sp.bmat([[None, pattern], [pattern.T, None]], format="csr")
            _, labels = connected_components(graph, directed=False)
            self.row_label = labels[:m]
            self.var_label = labels[m:]
        else:
            self.row_label = np.zeros(0, dtype=np.int64)
            self.var_label = np.zeros(0, dtype=np.int64)
        self._components: dict[int, _Component] = {}
        self.solved = 0

    def _bound_singletons(self) -> None:
        """Turn every row with one unknown variable into bounds of that variable."""
        counts = np.diff(self.rows.indptr)
        single = np.flatnonzero(counts == 1)
        if single.size == 0:
            return
        var = self.rows.indices[self.rows.indptr[single]]
        coef = self.rows.data[self.rows.indptr[single]]
        lo = self.row_lb[single] / coef
        hi = self.row_ub[single] / coef
        lo, hi = np.where(coef > 0, lo, hi), np.where(coef > 0, hi, lo)
        np.maximum.at(self.var_lb, var, lo)
        np.minimum.at(self.var_ub, var, hi)
        keep = np.flatnonzero(counts != 1)
        position = np.full(counts.size, -1, dtype=np.int64)
        position[keep] = np.arange(keep.size)
        moved = self.row_position >= 0
        self.row_position[moved] = position[self.row_position[moved]]
        self.row_shift = self.row_shift[keep]
        self.rows = self.rows[keep]
        self.row_lb = self.row_lb[keep]
        self.row_ub = self.row_ub[keep]

    def _component(self, label: int) -> _Component:
        comp = self._components.get(label)
        if comp is not None:
            return comp
        vars_local = np.flatnonzero(self.var_label == label)
        rows_idx = np.flatnonzero(self.row_label == label)
        comp = _Component(
            variables=self.unknown[vars_local],
            rows=rows_idx,
            program=Program(
                self.rows[rows_idx][:, vars_local],
                self.row_lb[rows_idx],
                self.row_ub[rows_idx],
                self.var_lb[vars_local],
                self.var_ub[vars_local],
            ),
        )
        self._components[label] = comp
        return comp

    def component_of(self, var: int) -> int:
        return int(self.var_label[self.local[var]])

    def constant_part(self, form: dict[int, float]) -> tuple[float, dict[int, float]]:
        """Split a linear form into its value on fixed variables and its unknown part."""
        const = 0.0
        rest: dict[int, float] = {}
        for var, coef in form.items():
            if self.local[var] < 0:
                const += coef * self.base[var]
            else:
                rest[var] = coef
        return const, rest

    def optimize(self, form: dict[int, float], maximize: bool) -> Optimum:
        """min or max of a linear form over the attacker's polytope."""
        const, rest = self.constant_part(form)
        if not rest:
            return Optimum(const, None, "fixed")
        labels = {self.component_of(v) for v in rest}
        point = self.base.copy()
        total = const
        for label in sorted(labels):
            comp = self._component(label)
            cost = np.zeros(comp.variables.size)
            for var, coef in rest.items():
                # comp.variables is sorted (it comes from flatnonzero)
                at = int(np.searchsorted(comp.variables, var))
                if at < comp.variables.size and comp.variables[at] == var:
                    cost[at] = -coef if maximize else coef
            self.solved += 1
            sol = comp.program.minimize(cost)
            if sol.status == UNBOUNDED:
                return Optimum(_INF if maximize else -_INF, None, "unbounded")
            if sol.status != OPTIMAL or sol.x is None:
                return Optimum(np.nan, None, "failed")
            point[comp.variables] = sol.x
            total += -sol.value if maximize else sol.value
        return Optimum(float(total), point, "optimal")

    def fact_row(self, rest: dict[int, float]) -> int:
        """The reduced row of the two-variable fact whose form is ``rest`` (-1 if none)."""
        knowledge_row = self.knowledge.row_of.get(form_of(rest), -1)
        if knowledge_row < 0:
            return -1
        return int(self.row_position[knowledge_row])

    def cappable(self, rest: dict[int, float]) -> bool:
        """Whether a program can hold the unknown part of a form at a cap of its own: it is a
        single variable, or the form of a fact row."""
        return len(rest) == 1 or self.fact_row(rest) >= 0

    def bounded(self, rest: dict[int, float], maximize: bool) -> bool:
        """Whether the model bounds the unknown part of a form (a count, or n - x of a rate
        cell) in the direction of ``maximize`` by a bound of its own: a column's, or a fact
        row's."""
        if len(rest) == 1:
            ((var, coef),) = rest.items()
            j = self.local[var]
            upward = (coef > 0) == maximize
            return bool(np.isfinite(self.var_ub[j] if upward else self.var_lb[j]))
        reduced = self.fact_row(rest)
        if reduced < 0:
            return False
        return bool(np.isfinite(self.row_ub[reduced] if maximize else self.row_lb[reduced]))


@dataclass(frozen=True)
class Requirement:
    """A sensitive quantity (a linear form over the space) and the interval the attacker must
    not narrow."""

    table: int  # 0 is the release being protected, then the earlier releases in order
    cell: int  # flat index of the cell in its own table
    quantity: str
    form: Form
    lower: float  # the attacker's minimum must be at most this
    upper: float  # and the maximum at least this
    reason: str  # "primary", "limited" (held to what it was published with), "top_coded", "bottom_coded"

    @property
    def anchor(self) -> int:
        """The variable whose coordinates place the requirement (its denominator for a rate)."""
        return max(self.form, key=lambda term: (term[1] > 0, term[0]))[0]


@dataclass
class Witnesses:
    """Verified feasible points of the model (rows), kept as the pattern grows."""

    nvars: int
    points: list[np.ndarray] = field(default_factory=list)

    def matrix(self) -> np.ndarray:
        if not self.points:
            return np.zeros((0, self.nvars))
        return np.vstack(self.points)

    def keep_feasible(self, knowledge: Knowledge) -> None:
        """Drop every point that is not a point of ``knowledge``'s polytope (vectorized)."""
        if not self.points:
            return
        w = np.vstack(self.points)
        ok = np.all(w >= knowledge.lb - TOL, axis=1) & np.all(w <= knowledge.ub + TOL, axis=1)
        values = (knowledge.rows @ w.T).T
        ok &= np.all(values >= knowledge.row_lb - TOL, axis=1)
        ok &= np.all(values <= knowledge.row_ub + TOL, axis=1)
        self.points = [p for p, good in zip(self.points, ok, strict=True) if good]


@dataclass
class Check:
    """The audit of one requirement: the attacker's reachable range of the quantity.

    ``min_value``/``max_value`` are the LP optimum when ``*_exact`` is true; otherwise they are
    values reached at a verified witness, which already prove the requirement on that side.
    """

    requirement: Requirement
    min_value: float = np.inf
    max_value: float = -np.inf
    min_exact: bool = False
    max_exact: bool = False
    # Set when the protection interval could not be met even with the whole release
    # suppressed (the statuses, or earlier releases, already reveal that much): the requirement
    # then holds the attacker's interval over that fully suppressed release, and ``wanted``
    # the protection interval it stands in for.
    limited: bool = False
    wanted: tuple[float, float] | None = None

    @property
    def lower_ok(self) -> bool:
        return self.min_value <= self.requirement.lower + TOL

    @property
    def upper_ok(self) -> bool:
        return self.max_value >= self.requirement.upper - TOL

    @property
    def ok(self) -> bool:
        return self.lower_ok and self.upper_ok


class _Sweep:
    """The sweep of one component (see :meth:`ReachedRanges.sweep`)."""

    def __init__(
        self,
        ledger: ReachedRanges,
        model: Model,
        comp: _Component,
        sides: Sequence[tuple[int, bool, dict[int, float]]],
    ) -> None:
        self.ledger = ledger
        self.model = model
        self.comp = comp
        costs = sp.lil_matrix((len(sides), comp.variables.size))
        for j, (_, maximize, rest) in enumerate(sides):
            for var, coef in rest.items():
                at = int(np.searchsorted(comp.variables, var))
                costs[j, at] = -coef if maximize else coef
        self.costs = costs.tocsr()
        self.maximize = np.array([mx for _, mx, _ in sides])
        self.owner = np.array([i for i, _, _ in sides])
        # A withheld cell says nothing, so the model does not stop a small quantity at its goal:
        # a program that pushes the sum of many would spend the slack on one. Each side is
        # therefore held at its goal while its program runs (a cap on its column, or on its fact
        # row): a smaller polytope, so every optimal point is still a point of the model.
        self.caps: list[tuple[str, int, float, float]] = []
        for i, maximize, rest in sides:
            const, _ = model.constant_part(ledger.form(i))
            goal = (ledger.upper[i] if maximize else ledger.lower[i]) - const
            if len(rest) == 1:
                ((var, coef),) = rest.items()
                at = int(np.searchsorted(comp.variables, var))
                value = goal / coef
                upward = (coef > 0) == maximize
                self.caps.append(("col", at, value, 1.0 if upward else -1.0))
                continue
            row = model.fact_row(rest)
            at = int(np.searchsorted(comp.rows, row)) if row >= 0 else -1
            if at < 0 or at >= comp.rows.size or comp.rows[at] != row:
                self.caps.append(("none", -1, 0.0, 0.0))
            else:
                self.caps.append(("row", at, goal, 1.0 if maximize else -1.0))
        self.done = np.zeros(len(sides), dtype=bool)
        self.basis: object | None = None
        self.spent = 0

    def run(self, budget: int, groups: bool = True) -> int:
        """Sweep with at most ``budget`` programs; returns how many were solved."""
        for members in (np.flatnonzero(self.maximize), np.flatnonzero(~self.maximize)):
            if members.size and self.spent < budget and self.reach(members) < 0:
                return self.spent
        if not groups:
            return self.spent
        # Every group starts from the optimum of the joint programs, where most quantities
        # sit at an end of their range: nearer to any group's optimum than the last group's.
        self.basis = self.comp.program.save_basis()
        anchors = [self.ledger.anchors[i] for i in self.owner]
        coords = self.model.knowledge.space.coords[anchors]
        while self.spent < budget and not self.done.all():
            # One pass over groups of the open sides; another only if this one paid off.
            start, settled, misses = self.spent, 0, 0
            for group in _conflict_free_groups(coords, ~self.done):
                group = group[~self.done[group]]
                if group.size < 2 or self.spent >= budget:
                    continue
                newly = self.reach(group)
                if newly < 0:
                    return self.spent
                settled += newly
                misses += newly < 2
                if misses >= 3:
                    break  # no better than single programs from here on
            if self.spent == start or settled < 2 * (self.spent - start):
                break
        return self.spent

    def _cap(
        self, program: Program, members: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cols: dict[int, tuple[float, float]] = {}
        rows: dict[int, tuple[float, float]] = {}
        for j in members:
            kind, at, value, direction = self.caps[int(j)]
            if kind == "none":
                continue
            target, lbs, ubs = (
                (cols, program.col_lb, program.col_ub)
                if kind == "col"
                else (rows, program.row_lb, program.row_ub)
            )
            lo, hi = target.get(at, (float(lbs[at]), float(ubs[at])))
            if direction > 0:
                hi = min(hi, max(value, lo))
            else:
                lo = max(lo, min(value, hi))
            target[at] = (lo, hi)
        col_at = np.array(sorted(cols), dtype=np.int64)
        row_at = np.array(sorted(rows), dtype=np.int64)
        saved = (
            col_at,
            program.col_lb[col_at].copy(),
            program.col_ub[col_at].copy(),
            row_at,
            program.row_lb[row_at].copy(),
            program.row_ub[row_at].copy(),
        )
        if col_at.size:
            program.set_col_bounds(
                col_at,
                np.array([cols[a][0] for a in col_at]),
                np.array([cols[a][1] for a in col_at]),
            )
        if row_at.size:
            program.set_row_bounds(
                row_at,
                np.array([rows[a][0] for a in row_at]),
                np.array([rows[a][1] for a in row_at]),
            )
        return saved

    @staticmethod
    def _uncap(
        program: Program,
        saved: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        col_at, col_lb, col_ub, row_at, row_lb, row_ub = saved
        if col_at.size:
            program.set_col_bounds(col_at, col_lb, col_ub)
        if row_at.size:
            program.set_row_bounds(row_at, row_lb, row_ub)

    def reach(self, members: np.ndarray) -> int:
        """One program for these sides; how many open sides its point settles (-1: failed)."""
        program = self.comp.program
        cost = np.asarray(self.costs[members].sum(axis=0)).ravel()
        if self.basis is not None:
            program.restore_basis(self.basis)
        saved = self._cap(program, members)
        try:
            solution = program.minimize(cost)
        finally:
            self._uncap(program, saved)
        self.spent += 1
        self.model.solved += 1
        if solution.status != OPTIMAL or solution.x is None:
            return -1
        point = self.model.base.copy()
        point[self.comp.variables] = solution.x
        if self.model.sliced and not self.model.knowledge.feasible(point):
            return -1  # pragma: no cover - a slice's points are the polytope's
        self.ledger.absorb(point[None, :])
        now = np.where(
            self.maximize,
            self.ledger.upper_ok()[self.owner],
            self.ledger.lower_ok()[self.owner],
        )
        newly = int((now & ~self.done).sum())
        self.done |= now
        return newly


def _conflict_free_groups(coords: np.ndarray, open_: np.ndarray) -> list[np.ndarray]:
    """Greedy grouping of the open sides (rows of ``coords``, their cube coordinates) so that
    no two sides of a group are on one line of the cube (nor of one cell), largest groups
    first."""
    axes = coords.shape[1] if coords.ndim == 2 else 0
    used: list[set[tuple[int, ...]]] = []
    members: list[list[int]] = []
    for j in np.flatnonzero(open_):
        point = tuple(int(c) for c in coords[j])
        keys = {(axis, *point[:axis], *point[axis + 1 :]) for axis in range(axes)}
        keys.add((-1, *point))
        for g, taken in enumerate(used):
            if taken.isdisjoint(keys):
                taken.update(keys)
                members[g].append(int(j))
                break
        else:
            used.append(set(keys))
            members.append([int(j)])
    order = sorted(range(len(members)), key=lambda g: -len(members[g]))
    return [np.array(members[g], dtype=np.int64) for g in order]


def forms(nvars: int, requirements: Sequence[Requirement]) -> sp.csr_matrix:
    """The requirements' linear forms as the rows of one sparse matrix."""
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i, req in enumerate(requirements):
        for var, coef in req.form:
            rows.append(i)
            cols.append(var)
            vals.append(coef)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(requirements), nvars))


class ReachedRanges:
    """The audit in progress: per requirement, the lowest and highest value of its quantity
    proven reachable so far (by verified witnesses or by optimal points of the programs)."""

    def __init__(self, nvars: int, requirements: Sequence[Requirement]) -> None:
        self.requirements = list(requirements)
        self.forms = forms(nvars, self.requirements)
        self._form_dicts = [dict(r.form) for r in self.requirements]
        self.anchors = [r.anchor for r in self.requirements]
        count = len(self.requirements)
        self.lows = np.full(count, np.inf)
        self.highs = np.full(count, -np.inf)
        self.min_exact = np.zeros(count, dtype=bool)
        self.max_exact = np.zeros(count, dtype=bool)
        self.lower = np.array([r.lower for r in self.requirements], dtype=float)
        self.upper = np.array([r.upper for r in self.requirements], dtype=float)
        self.limited = np.zeros(count, dtype=bool)
        self.witnesses = 0

    def form(self, i: int) -> dict[int, float]:
        """Requirement ``i``'s quantity as a linear form (variable -> coefficient)."""
        return self._form_dicts[i]

    def limit(self, i: int, maximize: bool, value: float) -> None:
        """Narrow one side of requirement ``i`` to ``value``, the most any suppression of the
        release can leave the attacker (see :attr:`Check.limited`)."""
        self.limited[i] = True
        if maximize:
            self.upper[i] = min(self.upper[i], value)
        else:
            self.lower[i] = max(self.lower[i], value)

    def absorb(self, points: np.ndarray) -> None:
        """Take verified points of the current model (rows) as witnesses."""
        if points.shape[0] == 0 or not self.requirements:
            return
        self.witnesses += points.shape[0]
        values = np.asarray(self.forms @ points.T)
        np.minimum(self.lows, values.min(axis=1), out=self.lows)
        np.maximum(self.highs, values.max(axis=1), out=self.highs)

    def absorb_moves(self, truth: np.ndarray, moves: sp.csr_matrix) -> None:
        """Take verified points given as sparse displacements from ``truth`` (rows)."""
        if moves.shape[0] == 0 or not self.requirements:
            return
        self.witnesses += moves.shape[0]
        base = np.asarray(self.forms @ truth).ravel()
        shifts = sp.csr_matrix(self.forms @ moves.T)  # requirements x moves; zero: not moved
        np.minimum(self.lows, base + shifts.min(axis=1).toarray().ravel(), out=self.lows)
        np.maximum(self.highs, base + shifts.max(axis=1).toarray().ravel(), out=self.highs)

    def upper_ok(self) -> np.ndarray:
        return self.highs >= self.upper - TOL

    def lower_ok(self) -> np.ndarray:
        return self.lows <= self.lower + TOL

    def least_advanced(self, truth: np.ndarray) -> np.ndarray:
        """The open requirements, those whose open sides the points so far have moved least
        toward their goals (as a share of the way from the true value) first."""
        value = np.asarray(self.forms @ truth).ravel()
        up = (self.upper - np.maximum(self.highs, value)) / np.maximum(self.upper - value, TOL)
        down = (np.minimum(self.lows, value) - self.lower) / np.maximum(value - self.lower, TOL)
        left = np.maximum(
            np.where(self.upper_ok(), -np.inf, up), np.where(self.lower_ok(), -np.inf, down)
        )
        order = np.argsort(-left, kind="stable")
        return order[np.isfinite(left[order])]

    def bad(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~(self.upper_ok() & self.lower_ok()))]

    def sweep(
        self, model: Model, indices: Iterable[int], programs: int = 400, *, groups: bool = True
    ) -> None:
        """Settle many sides with few programs before solving them one by one.

        With the default protection level, a side's goal is the very bound the model puts on
        its quantity: a small quantity is at least 0 and at most k - 1, which is what its status
        says. A program that maximizes (minimizes) the sum of many such quantities therefore
        stops each one at its bound, and its optimal point, an ordinary point of the model,
        settles every side whose quantity it takes to the goal. Per component, one program
        takes every open upper side, one every open lower side. The sides left compete for the
        same slack (they share a line of the cube), so they are then reached for in groups of
        sides that share no line, one program per group, each started from the basis of the
        joint programs (the previous group's optimum is further away), while the programs
        still settle more than one side each. Sides whose quantity the model does not bound in
        their direction (so that a sum could be unbounded) are left to single programs, as are
        those of a component with few open sides. At most ``programs`` programs are solved.
        """
        upper_ok, lower_ok = self.upper_ok(), self.lower_ok()
        per_component: dict[int, list[tuple[int, bool, dict[int, float]]]] = {}
        for i in indices:
            _, rest = model.constant_part(self.form(i))
            labels = {model.component_of(v) for v in rest}
            if len(labels) != 1:
                continue
            label = labels.pop()
            for maximize in (True, False):
                if upper_ok[i] if maximize else lower_ok[i]:
                    continue
                if not model.bounded(rest, maximize) and not model.cappable(rest):
                    continue
                per_component.setdefault(label, []).append((i, maximize, rest))
        budget = programs
        for label, sides in per_component.items():
            if len(sides) < 4 or budget <= 0:
                continue
            budget -= _Sweep(self, model, model._component(label), sides).run(budget, groups)

    def settle(
        self, model: Model, indices: Iterable[int], *, exact: bool = False, stop: bool = False
    ) -> int | None:
        """Solve the programs of these requirements that no witness settles (all if exact).

        With ``stop``, return at the first requirement a program leaves unsettled (violated,
        or the solver failed) and return its index; None when every one is settled.
        """
        for i in indices:
            form = self.form(i)
            for maximize in (True, False):
                settled = self.upper_ok()[i] if maximize else self.lower_ok()[i]
                if settled and not exact:
                    continue
                opt = model.optimize(form, maximize)
                if opt.status != "failed":  # a failure is left as a violation
                    if maximize:
                        self.highs[i], self.max_exact[i] = opt.value, True
                    else:
                        self.lows[i], self.min_exact[i] = opt.value, True
                    if opt.point is not None:
                        self.absorb(opt.point[None, :])
                if stop and not (self.upper_ok()[i] if maximize else self.lower_ok()[i]):
                    return int(i)
        return None

    def violations(self, model: Model, indices: Iterable[int], limit: int) -> list[int]:
        """Settle these requirements one by one (as :meth:`settle`) and return those left
        violated, at most ``limit`` of them (it stops there)."""
        out: list[int] = []
        for i in indices:
            if self.settle(model, [i], stop=True) is not None:
                out.append(int(i))
                if len(out) >= limit:
                    break
        return out

    def checks(self) -> list[Check]:
        out = []
        for i, r in enumerate(self.requirements):
            wanted = None
            if self.limited[i]:
                wanted = (r.lower, r.upper)
                r = replace(r, lower=float(self.lower[i]), upper=float(self.upper[i]))
            out.append(
                Check(
                    r,
                    float(self.lows[i]),
                    float(self.highs[i]),
                    bool(self.min_exact[i]),
                    bool(self.max_exact[i]),
                    bool(self.limited[i]),
                    wanted,
                )
            )
        return out


def certify(
    model: Model,
    requirements: Sequence[Requirement],
    witnesses: Witnesses | None = None,
    *,
    exact: bool = False,
) -> list[Check]:
    """Audit ``requirements`` against the model: one :class:`Check` per requirement.

    ``witnesses`` are verified against the model first; only programs they do not settle are
    solved (all of them with ``exact``).
    """
    ledger = ReachedRanges(model.knowledge.nvars, requirements)
    if witnesses is not None:
        witnesses.keep_feasible(model.knowledge)
        ledger.absorb(witnesses.matrix())
    ledger.settle(model, range(len(requirements)), exact=exact)
    return ledger.checks()
