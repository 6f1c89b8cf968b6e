"""The attacker's model of published tables, and the audit of suppressed cells.

Everything is laid out on one *joint* cube: the finest cross-classification of every dimension
of every table in the model, with all its margins (for a single release, that table itself).
Each published table is a set of cells of the joint cube: a table over a subset of the
dimensions is the joint cube at the total of every other dimension. The unknowns are the
numerator ``x`` and (for rates) the denominator ``n`` of every joint cell.

What the attacker knows (``Facts`` -> ``Knowledge``), all of it linear:

* every published value: an exact count is a fixed variable, a rounded count an interval;
* additivity: along every line of the joint cube (the cells of one dimension plus its margin),
  ``sum(cells) - margin`` equals the number of people counted in more than one of the cells.
  Distinct-person counts are not additive when a person falls in two cells (a child in two
  school years), so we assume the worst case: that the attacker knows that overlap exactly.
  It is zero whenever each person falls in one cell, which makes this plain additivity. When
  it is not zero, the attacker also knows that no cell exceeds its margin;
* counts are non-negative, and the numerator counts a subset of the denominator (0 <= x <= n);
* what the published statuses reveal. A ``secondary`` (or published) cell of a table with
  threshold k has every quantity at least k. A ``primary`` cell has *some* quantity under k
  (the numerator, the complement n - x, or the denominator); the attacker cannot tell which in
  a rate table, so his knowledge is a union of polytopes. We audit against the polytope of the
  true case, with every quantity that really is under k capped at k - 1: it lies inside that
  union, so every interval we prove for it holds a fortiori for the attacker;
* a coded cell (published as ">= 95%") satisfies 100 x >= 95 n (and likewise at the bottom).

The audit (``Model.optimize``, ``certify``): for each requirement (a sensitive quantity q of a
cell and its protection interval [lo, hi], see :mod:`aggregation.protection`) the attacker's
linear programs min q and max q over the polytope must reach lo and hi. The programs run with
SciPy's HiGHS on the unknown variables only (published values are constants), split into
connected components of the constraint graph, so each program is small and sparse. A program
is skipped only when a *witness* already settles that side: a point verified to satisfy every
constraint of the model (``Model.feasible``) at which q <= lo (resp. >= hi) proves min <= lo
(resp. max >= hi) exactly. Witnesses come from earlier programs' optimal points and from the
perturbations the suppression heuristic used; each is re-verified against the current model
before it is used, so the audit does not trust the heuristic (``Knowledge.feasible_moves``
checks the hypercube moves as sparse displacements from the true counts). ``exact=True`` solves
every program regardless.

Most sides are settled in bulk (``Ledger.sweep``): with the default protection level a side's
goal is the bound the model itself puts on its quantity (0 or k - 1), so a program optimizing
the sum of many quantities stops each at its goal, and its optimum settles every side it takes
there. Sweeps run on slices of the polytope first (``Model(knowledge, hold=...)``: numerators
alone, denominators at their true values, then the other way round), whose points are points of
the whole polytope and whose programs are a quarter of the size, then on the whole polytope.

The model is the linear relaxation used by tau-ARGUS and sdcTable: an attacker who also uses
integrality can, in tables of three or more dimensions, occasionally obtain a slightly tighter
interval than the linear one.

Why our own code rather than a library: tau-ARGUS (Java/C++) and sdcTable (R) audit one table
at a time and know nothing of distinct-person overlap, status knowledge or linked releases; the
linear algebra and the solver are SciPy's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from aggregation.lp import OPTIMAL, UNBOUNDED, Program
from aggregation.suppression import COMPLEMENT, DENOMINATOR, NUMERATOR

TOL = 1e-6  # feasibility tolerance on counts (whole people), far below any privacy-relevant gap
_INF = np.inf


class ModelInconsistent(ValueError):
    """The published facts contradict the true counts: the tables are not of the same data."""


@dataclass(frozen=True)
class Geometry:
    """The joint cube: its shape (with a margin index per axis) and whether it has denominators."""

    shape: tuple[int, ...]
    rate: bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nvars(self) -> int:
        return self.size * (2 if self.rate else 1)

    @cached_property
    def lines(self) -> sp.csr_matrix:
        """One row per line: +1 on its interior cells, -1 on its margin (rows x cells)."""
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        flat = np.arange(self.size).reshape(self.shape)
        start = 0
        for axis, length in enumerate(self.shape):
            cells = np.moveaxis(flat, axis, -1).reshape(-1, length)
            count = cells.shape[0]
            rows.append(np.repeat(np.arange(start, start + count), length))
            cols.append(cells.ravel())
            signs = np.ones(length)
            signs[-1] = -1.0
            vals.append(np.tile(signs, count))
            start += count
        if not rows:
            return sp.csr_matrix((0, self.size))
        return sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(start, self.size),
        )

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


@dataclass
class Facts:
    """What has been published about each joint cell, accumulated over tables (flat arrays)."""

    geometry: Geometry
    x_lo: np.ndarray = field(init=False)
    x_hi: np.ndarray = field(init=False)
    n_lo: np.ndarray = field(init=False)
    n_hi: np.ndarray = field(init=False)
    c_lo: np.ndarray = field(init=False)
    c_hi: np.ndarray = field(init=False)
    top: np.ndarray = field(init=False)
    bottom: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        size = self.geometry.size
        self.x_lo = np.zeros(size)
        self.x_hi = np.full(size, _INF)
        self.n_lo = np.zeros(size)
        self.n_hi = np.full(size, _INF)
        self.c_lo = np.zeros(size)
        self.c_hi = np.full(size, _INF)
        self.top = np.full(size, np.nan)
        self.bottom = np.full(size, np.nan)

    def numerator_within(self, cells: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        np.maximum.at(self.x_lo, cells, lo)
        np.minimum.at(self.x_hi, cells, hi)

    def denominator_within(self, cells: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        np.maximum.at(self.n_lo, cells, lo)
        np.minimum.at(self.n_hi, cells, hi)

    def not_small(self, cells: np.ndarray, k: int) -> None:
        """The status says every quantity of these cells is at least k."""
        np.maximum.at(self.x_lo, cells, float(k))
        if self.geometry.rate:
            np.maximum.at(self.c_lo, cells, float(k))
            np.maximum.at(self.n_lo, cells, float(k))

    def small(self, cells: np.ndarray, quantity: str, k: int) -> None:
        """A quantity of these primary cells is under k: capped at k - 1."""
        cap = float(k - 1)
        if quantity == NUMERATOR:
            np.minimum.at(self.x_hi, cells, cap)
        elif quantity == DENOMINATOR:
            np.minimum.at(self.n_hi, cells, cap)
        else:
            np.minimum.at(self.c_hi, cells, cap)

    def empty(self, cells: np.ndarray) -> None:
        zeros = np.zeros(len(cells))
        self.numerator_within(cells, zeros, zeros)
        self.denominator_within(cells, zeros, zeros)

    def coded_top(self, cells: np.ndarray, percent: float) -> None:
        self.top[cells] = np.fmax(self.top[cells], percent)

    def coded_bottom(self, cells: np.ndarray, percent: float) -> None:
        self.bottom[cells] = np.fmin(self.bottom[cells], percent)


@dataclass
class Knowledge:
    """The attacker's polytope: ``lb <= v <= ub`` and ``row_lb <= rows @ v <= row_ub``."""

    geometry: Geometry
    truth: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    rows: sp.csr_matrix
    row_lb: np.ndarray
    row_ub: np.ndarray
    complement_start: int = -1  # row of n - x of cell 0 (rate tables); cell j is start + j

    @classmethod
    def build(cls, facts: Facts, truth_x: np.ndarray, truth_n: np.ndarray | None) -> Knowledge:
        g = facts.geometry
        size = g.size
        lines = g.lines
        x = np.asarray(truth_x, dtype=float).ravel()
        blocks: list[sp.csr_matrix] = []
        los: list[np.ndarray] = []
        his: list[np.ndarray] = []

        def widen(m: sp.spmatrix, offset: int) -> sp.csr_matrix:
            m = sp.csr_matrix(m)
            return sp.csr_matrix(
                (m.data, m.indices + offset, m.indptr), shape=(m.shape[0], g.nvars)
            )

        tables = [(x, 0)]
        if g.rate:
            assert truth_n is not None
            n = np.asarray(truth_n, dtype=float).ravel()
            tables.append((n, size))
        for values, offset in tables:
            overlap = lines @ values
            blocks.append(widen(lines, offset))
            los.append(overlap)
            his.append(overlap.copy())
            over = np.flatnonzero(np.abs(overlap) > 0.5)
            if over.size:
                # Someone is in two cells of these lines: the attacker knows no cell tops its margin.
                sub = lines[over].tocoo()
                interior = sub.data > 0
                margin_of = np.zeros(len(over), dtype=np.int64)
                margin_of[sub.row[~interior]] = sub.col[~interior]
                r = np.arange(int(interior.sum()))
                cells = sub.col[interior]
                margins = margin_of[sub.row[interior]]
                m = sp.csr_matrix(
                    (
                        np.concatenate([np.ones(r.size), -np.ones(r.size)]),
                        (np.concatenate([r, r]), np.concatenate([cells, margins])),
                    ),
                    shape=(r.size, size),
                )
                blocks.append(widen(m, offset))
                los.append(np.full(r.size, -_INF))
                his.append(np.zeros(r.size))
        complement_start = -1
        if g.rate:
            complement_start = sum(b.shape[0] for b in blocks)
            eye = sp.identity(size, format="csr")
            blocks.append(sp.hstack([-eye, eye], format="csr"))  # n - x
            los.append(np.maximum(facts.c_lo, 0.0))
            his.append(facts.c_hi.copy())
            for coded, sign in ((facts.top, 1.0), (facts.bottom, -1.0)):
                cells = np.flatnonzero(~np.isnan(coded))
                if cells.size:
                    r = np.arange(cells.size)
                    # sign * (100 x - code n) >= 0
                    m = sp.csr_matrix(
                        (
                            np.concatenate([np.full(r.size, 100.0 * sign), -sign * coded[cells]]),
                            (np.concatenate([r, r]), np.concatenate([cells, size + cells])),
                        ),
                        shape=(r.size, g.nvars),
                    )
                    blocks.append(m)
                    los.append(np.zeros(r.size))
                    his.append(np.full(r.size, _INF))
            truth = np.concatenate([x, n])
            lb = np.concatenate([facts.x_lo, facts.n_lo])
            ub = np.concatenate([facts.x_hi, facts.n_hi])
        else:
            truth = x
            lb = facts.x_lo.copy()
            ub = facts.x_hi.copy()
        rows = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, g.nvars))
        knowledge = cls(
            geometry=g,
            truth=truth,
            lb=lb,
            ub=ub,
            rows=rows,
            row_lb=np.concatenate(los) if los else np.zeros(0),
            row_ub=np.concatenate(his) if his else np.zeros(0),
            complement_start=complement_start,
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
        self.local = np.full(kn.geometry.nvars, -1, dtype=np.int64)
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

    def bounded(self, rest: dict[int, float], maximize: bool) -> bool:
        """Whether the model bounds the unknown part of a form (x, n, or n - x of a cell) in
        the direction of ``maximize`` by a bound of its own: a column's, or the n - x row's."""
        if len(rest) == 1:
            ((var, coef),) = rest.items()
            j = self.local[var]
            upward = (coef > 0) == maximize
            return bool(np.isfinite(self.var_ub[j] if upward else self.var_lb[j]))
        size = self.knowledge.geometry.size
        if len(rest) != 2 or self.knowledge.complement_start < 0:
            return False
        cell = min(rest)
        if rest.get(cell) != -1.0 or rest.get(size + cell) != 1.0:
            return False
        reduced = self.row_position[self.knowledge.complement_start + cell]
        if reduced < 0:
            return False
        return bool(np.isfinite(self.row_ub[reduced] if maximize else self.row_lb[reduced]))


@dataclass(frozen=True)
class Requirement:
    """A sensitive quantity of a joint cell and the interval the attacker must not narrow."""

    table: int  # 0 is the release being protected, then the earlier releases in order
    cell: int  # flat index in the joint cube
    quantity: str
    lower: float  # the attacker's minimum must be at most this
    upper: float  # and the maximum at least this
    reason: str  # "primary", "top_coded" or "bottom_coded"


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
    """The sweep of one component (see :meth:`Ledger.sweep`)."""

    def __init__(
        self,
        ledger: Ledger,
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
        shape = self.model.knowledge.geometry.shape
        cells = [self.ledger.requirements[i].cell for i in self.owner]
        while self.spent < budget and not self.done.all():
            # One pass over groups of the open sides; another only if this one paid off.
            start, settled, misses = self.spent, 0, 0
            for group in _conflict_free_groups(shape, cells, ~self.done):
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

    def reach(self, members: np.ndarray) -> int:
        """One program for these sides; how many open sides its point settles (-1: failed)."""
        program = self.comp.program
        cost = np.asarray(self.costs[members].sum(axis=0)).ravel()
        if self.basis is not None:
            program.restore_basis(self.basis)
        solution = program.minimize(cost)
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


def _conflict_free_groups(
    shape: tuple[int, ...], cells: Sequence[int], open_: np.ndarray
) -> list[np.ndarray]:
    """Greedy grouping of the open sides (positions in ``cells``) so that no two sides of a
    group are on one line of the table (nor of one cell), largest groups first."""
    coords = np.unravel_index(np.asarray(cells, dtype=np.int64), shape)
    used: list[set[tuple[int, ...]]] = []
    members: list[list[int]] = []
    for j in np.flatnonzero(open_):
        point = tuple(int(c[j]) for c in coords)
        keys = {(axis, *point[:axis], *point[axis + 1 :]) for axis in range(len(shape))}
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


def forms(geometry: Geometry, requirements: Sequence[Requirement]) -> sp.csr_matrix:
    """The requirements' linear forms as the rows of one sparse matrix."""
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i, req in enumerate(requirements):
        for var, coef in geometry.var(req.cell, req.quantity).items():
            rows.append(i)
            cols.append(var)
            vals.append(coef)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(requirements), geometry.nvars))


class Ledger:
    """The audit in progress: per requirement, the lowest and highest value of its quantity
    proven reachable so far (by verified witnesses or by optimal points of the programs)."""

    def __init__(self, geometry: Geometry, requirements: Sequence[Requirement]) -> None:
        self.requirements = list(requirements)
        self.forms = forms(geometry, self.requirements)
        self._form_dicts = [
            {int(c): float(v) for c, v in zip(*self._row(i), strict=True)}
            for i in range(len(self.requirements))
        ]
        count = len(self.requirements)
        self.lows = np.full(count, np.inf)
        self.highs = np.full(count, -np.inf)
        self.min_exact = np.zeros(count, dtype=bool)
        self.max_exact = np.zeros(count, dtype=bool)
        self.lower = np.array([r.lower for r in self.requirements], dtype=float)
        self.upper = np.array([r.upper for r in self.requirements], dtype=float)
        self.limited = np.zeros(count, dtype=bool)
        self.witnesses = 0

    def _row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.forms.indptr[i], self.forms.indptr[i + 1]
        return self.forms.indices[start:end], self.forms.data[start:end]

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
        same slack (their cells share a line of the table), so they are then reached for in
        groups of sides that share no line, one program per group, each started from the
        basis of the joint programs (the previous group's optimum is further away), while the
        programs still settle more than one side each. Sides whose quantity the model does not
        bound in their direction (so that a sum could be unbounded) are left to single
        programs, as are those of a component with few open sides. At most ``programs``
        programs are solved.
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
                if (upper_ok[i] if maximize else lower_ok[i]) or not model.bounded(rest, maximize):
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
    ledger = Ledger(model.knowledge.geometry, requirements)
    if witnesses is not None:
        witnesses.keep_feasible(model.knowledge)
        ledger.absorb(witnesses.matrix())
    ledger.settle(model, range(len(requirements)), exact=exact)
    return ledger.checks()
