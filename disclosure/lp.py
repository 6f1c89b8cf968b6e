"""Linear programs with HiGHS: one model, many small changes.

The audit solves a min and a max program per requirement over the same polytope, and the
perturbation pass solves one program per requirement that differs from the last only in a bound
and a few costs. So each model is passed to HiGHS once and every new solve starts from the
previous optimal basis (about 1 ms instead of 20 ms on a 1,000-variable component): after a
change of objective the basis stays primal feasible (primal simplex), after a change of bounds
it stays dual feasible (dual simplex). We call HiGHS through ``highspy``, its own binding, which
SciPy's ``linprog`` also wraps, and fall back to ``scipy.optimize.linprog(method="highs")``
(same solver, same answers, no warm start) when it is not importable.

A program solved from scratch with at least a thousand variables goes by HiGHS's interior-point
method with crossover: the audit's polytopes are highly degenerate, and the simplex method takes
thousands of pivots on them where the interior point takes a few dozen iterations; crossover
leaves an optimal basis for the warm starts that follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

_highs_core: Any
try:  # pragma: no cover - exercised on whichever branch is installed
    from highspy import _core as _highs_core

    _HIGHS: Any = getattr(_highs_core, "_Highs", None)
    _INF_HIGHS = float(_highs_core.kHighsInf)
except ImportError:  # pragma: no cover
    _highs_core = None
    _HIGHS = None
    _INF_HIGHS = np.inf

OPTIMAL = "optimal"
UNBOUNDED = "unbounded"
INFEASIBLE = "infeasible"
FAILED = "failed"
_DUAL, _PRIMAL = 1, 4
_WARM_PIVOTS = 2_000  # see Program._solve_highs
_IPM_COLUMNS = 1_000  # a cold solve of a program this large goes by interior point
_NO_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class Solution:
    status: str
    value: float
    x: np.ndarray | None


def _finite(a: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.clip(np.asarray(a, dtype=float), -_INF_HIGHS, _INF_HIGHS)
    return out


class Program:
    """min c @ x  s.t.  row_lb <= A x <= row_ub,  col_lb <= x <= col_ub, modified in place."""

    def __init__(
        self,
        a: sp.spmatrix,
        row_lb: np.ndarray,
        row_ub: np.ndarray,
        col_lb: np.ndarray,
        col_ub: np.ndarray,
        cost: np.ndarray | None = None,
    ) -> None:
        self.a = sp.csc_matrix(a)
        self.row_lb = np.array(row_lb, dtype=float)
        self.row_ub = np.array(row_ub, dtype=float)
        self.col_lb = np.array(col_lb, dtype=float)
        self.col_ub = np.array(col_ub, dtype=float)
        self.columns = self.a.shape[1]
        self.cost = np.zeros(self.columns) if cost is None else np.array(cost, dtype=float)
        self.solves = 0
        self._highs: Any = None
        self._strategy = _DUAL
        self._solved_once = False
        self._stalls = 0  # warm starts that stalled, less those that did not since
        self._cold_left = 0  # solves to start cold before the next warm start

    # -- modifications ---------------------------------------------------------------------
    def set_cost(self, index: np.ndarray, values: np.ndarray) -> None:
        index = np.asarray(index, dtype=np.int32)
        values = np.asarray(values, dtype=float)
        self.cost[index] = values
        if self._highs is not None and index.size:
            self._highs.changeColsCost(index.size, index, values)
            self._strategy = _PRIMAL

    def set_col_bounds(self, index: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        index = np.asarray(index, dtype=np.int32)
        self.col_lb[index] = lb
        self.col_ub[index] = ub
        if self._highs is not None and index.size:
            self._highs.changeColsBounds(index.size, index, _finite(lb), _finite(ub))
            self._strategy = _DUAL

    def set_row_bounds(self, index: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        index = np.asarray(index, dtype=np.int32)
        self.row_lb[index] = lb
        self.row_ub[index] = ub
        if self._highs is not None:
            for i, lo, hi in zip(index, _finite(lb), _finite(ub), strict=True):
                self._highs.changeRowBounds(int(i), float(lo), float(hi))
            self._strategy = _DUAL

    def minimize(self, cost: np.ndarray) -> Solution:
        """Replace the objective by ``cost`` (dense) and solve."""
        cost = np.asarray(cost, dtype=float)
        changed = np.flatnonzero(cost != self.cost)
        self.set_cost(changed, cost[changed])
        return self.solve()

    def save_basis(self) -> object | None:
        """The current basis (None without highspy), for :meth:`restore_basis`."""
        if self._highs is None or not self._solved_once:
            return None
        basis: object = self._highs.getBasis()
        return basis

    def restore_basis(self, basis: object | None) -> None:
        """Start the next solve from a basis saved earlier (any basis is primal feasible
        after a change of objective only, as the primal simplex needs)."""
        if basis is not None and self._highs is not None:
            self._highs.setBasis(basis)
            self._strategy = _PRIMAL

    # -- solving ---------------------------------------------------------------------------
    def solve(self) -> Solution:
        self.solves += 1
        if _HIGHS is not None:
            return self._solve_highs()
        return self._solve_linprog()

    def _model(self) -> Any:
        h = _HIGHS()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("presolve", "off")  # presolve would throw the warm basis away
        lp = _highs_core.HighsLp()
        lp.num_col_ = self.columns
        lp.num_row_ = self.a.shape[0]
        lp.col_cost_ = self.cost.copy()
        lp.col_lower_ = _finite(self.col_lb)
        lp.col_upper_ = _finite(self.col_ub)
        lp.row_lower_ = _finite(self.row_lb)
        lp.row_upper_ = _finite(self.row_ub)
        lp.a_matrix_.format_ = _highs_core.MatrixFormat.kColwise
        lp.a_matrix_.start_ = self.a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = self.a.indices.astype(np.int32)
        lp.a_matrix_.value_ = self.a.data.astype(float)
        h.passModel(lp)
        return h

    def _solve_highs(self) -> Solution:
        if self._highs is None:
            self._highs = self._model()
            self._strategy = _DUAL
        h = self._highs
        status_enum = _highs_core.HighsModelStatus
        for attempt in range(2):
            if attempt == 1:
                # Trouble from a warm start: solve again from scratch with the dual simplex.
                h.clearSolver()
                self._strategy = _DUAL
            # After a warm start that stalls, the next solves start cold, twice as many after
            # each stall in a row: on a polytope where warm starts keep stalling (a stall costs
            # seconds, a cold solve by interior point a fraction of one) nearly every solve
            # goes cold, and where one stalled by chance the cheap warm starts resume.
            backoff = attempt == 0 and self._solved_once and self._cold_left > 0
            if backoff:
                self._cold_left -= 1
            cold = not self._solved_once or attempt == 1 or backoff
            # A cold solve is several times faster presolved; a warm one must not be (presolve
            # would throw the basis away).
            h.setOptionValue("presolve", "on" if cold else "off")
            # A large polytope of the audit is degenerate: the simplex method takes thousands of
            # pivots from scratch where the interior-point method (with crossover to an optimal
            # basis, from which the next warm start goes on) takes a few dozen iterations.
            ipm = cold and self.columns >= _IPM_COLUMNS
            h.setOptionValue("solver", "ipm" if ipm else "simplex")
            h.setOptionValue("simplex_strategy", _DUAL if cold else self._strategy)
            # A warm start is usually a few pivots from the optimum, but on a degenerate
            # polytope HiGHS can stall from one for minutes where a presolved cold solve takes a
            # second: past this many pivots (counted per run), the cold solve takes over.
            # Measured (seed 7 of tests/disclosure/test_joint_random.py, the slice release of
            # tests/indicators/test_disclosure_http.py, bench_joint's demo history): 475 s,
            # 109 s and 6 s with stalls of 10,000 pivots and cold solves by simplex; 36 s, 31 s
            # and 6 s like this.
            h.setOptionValue("simplex_iteration_limit", _NO_LIMIT if cold else _WARM_PIVOTS)
            h.run()
            status = h.getModelStatus()
            if not cold and status == status_enum.kIterationLimit:
                self._stalls += 1
                self._cold_left = 2**self._stalls
            elif not cold:
                self._stalls = max(0, self._stalls - 1)
            if status == status_enum.kOptimal:
                self._solved_once = True
                x = np.asarray(h.getSolution().col_value, dtype=float)
                return Solution(OPTIMAL, float(self.cost @ x), x)
            if status == status_enum.kUnbounded:
                return Solution(UNBOUNDED, -np.inf, None)
            if status == status_enum.kInfeasible and attempt == 1:
                return Solution(INFEASIBLE, np.nan, None)
        return Solution(FAILED, np.nan, None)

    def _solve_linprog(self) -> Solution:
        a = self.a.tocsr()
        eq = np.abs(self.row_ub - self.row_lb) <= 1e-12
        upper = ~eq & np.isfinite(self.row_ub)
        lower = ~eq & np.isfinite(self.row_lb)
        a_ub = sp.vstack([a[np.flatnonzero(upper)], -a[np.flatnonzero(lower)]], format="csr")
        b_ub = np.concatenate([self.row_ub[upper], -self.row_lb[lower]])
        res = linprog(
            self.cost,
            A_ub=a_ub if a_ub.shape[0] else None,
            b_ub=b_ub if b_ub.size else None,
            A_eq=a[np.flatnonzero(eq)] if np.any(eq) else None,
            b_eq=self.row_lb[eq] if np.any(eq) else None,
            bounds=np.column_stack([self.col_lb, self.col_ub]),
            method="highs",
        )
        if res.status == 0:
            return Solution(OPTIMAL, float(res.fun), np.asarray(res.x, dtype=float))
        if res.status == 3:
            return Solution(UNBOUNDED, -np.inf, None)
        if res.status == 2:
            return Solution(INFEASIBLE, np.nan, None)
        return Solution(FAILED, np.nan, None)
