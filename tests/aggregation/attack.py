"""An attacker written independently of disclosure.attacker, to audit releases in the tests.

It builds, with plain SciPy, the linear program of someone who holds every published table:
one variable per numerator and denominator of every cell of the joint cube (published values
as fixed bounds, rounded ones as intervals), every line of the cube summing to its margin (less
the people the line counts twice, which this attacker is assumed to know), 0 <= x <= n, and
what the statuses say (a withheld cell, ``suppressed``, says nothing; a structural zero is 0 of 0;
every published cell: every quantity at least k; coded: 100 x >= top n or <= bottom n).
Then it minimizes and maximizes every sensitive quantity with ``linprog``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from disclosure.cube import TOTAL, Cube

# Internal views of a protection still say primary or secondary; a reader sees "suppressed".
WITHHELD = ("suppressed", "primary", "secondary")


@dataclass
class Shown:
    """One published table as the attacker sees it, plus the threshold and codes it used."""

    dimensions: tuple[str, ...]
    status: dict[tuple[str, ...], str]
    numerator: dict[tuple[str, ...], float | None]
    denominator: dict[tuple[str, ...], float | None]
    k: int
    rounding: str = "none"
    top: float | None = None
    bottom: float | None = None
    lower: dict[tuple[str, ...], float | None] | None = None


def shown_from_cells(dimensions, cells, k, rounding="none", top=None, bottom=None) -> Shown:
    key = lambda c: tuple(str(c[d]) for d in dimensions)  # noqa: E731
    return Shown(
        tuple(dimensions),
        {key(c): c["status"] for c in cells},
        {key(c): c["numerator"] for c in cells},
        {key(c): c.get("denominator") for c in cells},
        k,
        rounding,
        top,
        bottom,
        {key(c): c.get("lower") for c in cells},
    )


def _interval(value: float, rounding: str) -> tuple[float, float]:
    if rounding == "base5":
        return max(0.0, value - 2), value + 2
    if rounding == "midpoint6":
        return value - 2.5, value + 2.5
    return value, value


class Attacker:
    def __init__(self, joint: Cube, tables: list[Shown]) -> None:
        self.joint = joint
        self.rate = joint.denominator is not None
        shape = joint.shape
        self.size = int(np.prod(shape))
        nv = self.size * (2 if self.rate else 1)
        self.nv = nv
        self.lb = np.zeros(nv)
        self.ub = np.full(nv, np.inf)
        rows: list[dict[int, float]] = []
        lo: list[float] = []
        hi: list[float] = []
        tx = joint.numerator.astype(float)
        tn = joint.denominator.astype(float) if self.rate else None
        index = np.arange(self.size).reshape(shape)
        tables_truth = [(tx, 0)] + ([(tn, self.size)] if self.rate else [])
        for values, off in tables_truth:
            for axis in range(len(shape)):
                for rest in itertools.product(
                    *(range(s) for i, s in enumerate(shape) if i != axis)
                ):
                    cells = []
                    for j in range(shape[axis]):
                        idx = list(rest)
                        idx.insert(axis, j)
                        cells.append(int(index[tuple(idx)]))
                    inner, margin = cells[:-1], cells[-1]
                    overlap = sum(values.flat[c] for c in inner) - values.flat[margin]
                    row = {off + c: 1.0 for c in inner}
                    row[off + margin] = -1.0
                    rows.append(row)
                    lo.append(overlap)
                    hi.append(overlap)
                    if overlap > 0:
                        for c in inner:
                            rows.append({off + c: 1.0, off + margin: -1.0})
                            lo.append(-np.inf)
                            hi.append(0.0)
        self.truth_x = tx.ravel()
        self.truth_n = None if tn is None else tn.ravel()
        if self.rate:
            for c in range(self.size):
                rows.append({self.size + c: 1.0, c: -1.0})  # n - x >= 0
                lo.append(0.0)
                hi.append(np.inf)
        for table in tables:
            for labels, status in table.status.items():
                c = self._joint_cell(table.dimensions, labels)
                k = table.k
                if status == "structural_zero":
                    self._fix(c, 0.0, 0.0)
                    self._fix(self.size + c, 0.0, 0.0)
                    continue
                if status in WITHHELD:
                    # One status for every withheld cell, small or not: it says nothing.
                    continue
                self.lb[c] = max(self.lb[c], k)
                if self.rate:
                    rows.append({self.size + c: 1.0, c: -1.0})
                    lo.append(k)
                    hi.append(np.inf)
                num = table.numerator[labels]
                den = table.denominator.get(labels)
                if num is not None:
                    self._fix(c, *_interval(float(num), table.rounding))
                if den is not None:
                    self._fix(self.size + c, *_interval(float(den), table.rounding))
                if num is None and den is not None:  # coded
                    lower = (table.lower or {}).get(labels)
                    if lower is not None and lower > 0:
                        rows.append({c: 100.0, self.size + c: -float(table.top)})
                        lo.append(0.0)
                        hi.append(np.inf)
                    else:
                        rows.append({c: 100.0, self.size + c: -float(table.bottom)})
                        lo.append(-np.inf)
                        hi.append(0.0)
        self.rows, self.lo, self.hi = rows, np.array(lo), np.array(hi)
        self._lp = None

    def _joint_cell(self, dims, labels) -> int:
        idx = []
        for d, cats in zip(self.joint.dimensions, self.joint.categories, strict=True):
            if d in dims:
                label = labels[dims.index(d)]
                idx.append(len(cats) if label == TOTAL else cats.index(label))
            else:
                idx.append(len(cats))
        return int(np.ravel_multi_index(idx, self.joint.shape))

    def _fix(self, var: int, lo: float, hi: float) -> None:
        self.lb[var] = max(self.lb[var], lo)
        self.ub[var] = min(self.ub[var], hi)

    def interval(self, dims, labels, quantity: str) -> tuple[float, float]:
        c = self._joint_cell(dims, labels)
        cost = np.zeros(self.nv)
        if quantity == "numerator":
            cost[c] = 1.0
        elif quantity == "denominator":
            cost[self.size + c] = 1.0
        else:
            cost[self.size + c] = 1.0
            cost[c] = -1.0
        if self._lp is None:
            self._lp = self._matrices()
        a_ub, b_ub, a_eq, b_eq = self._lp
        out = []
        for sign in (1.0, -1.0):
            res = linprog(
                sign * cost,
                A_ub=a_ub,
                b_ub=b_ub,
                A_eq=a_eq,
                b_eq=b_eq,
                bounds=list(zip(self.lb, self.ub, strict=True)),
                method="highs",
            )
            if res.status == 3:
                out.append(-np.inf * sign)
                continue
            assert res.status == 0, res.message
            out.append(sign * res.fun)
        return out[0], out[1]

    def _matrices(self):
        eq_r, eq_c, eq_v, b_eq = [], [], [], []
        ub_r, ub_c, ub_v, b_ub = [], [], [], []
        for row, lo, hi in zip(self.rows, self.lo, self.hi, strict=True):
            if lo == hi:
                r = len(b_eq)
                for v, coef in row.items():
                    eq_r.append(r)
                    eq_c.append(v)
                    eq_v.append(coef)
                b_eq.append(lo)
                continue
            for bound, sign in ((hi, 1.0), (lo, -1.0)):
                if np.isfinite(bound):
                    r = len(b_ub)
                    for v, coef in row.items():
                        ub_r.append(r)
                        ub_c.append(v)
                        ub_v.append(sign * coef)
                    b_ub.append(sign * bound)
        a_eq = sparse.csr_matrix((eq_v, (eq_r, eq_c)), shape=(len(b_eq), self.nv)) if b_eq else None
        a_ub = sparse.csr_matrix((ub_v, (ub_r, ub_c)), shape=(len(b_ub), self.nv)) if b_ub else None
        return a_ub, (np.array(b_ub) if b_ub else None), a_eq, (np.array(b_eq) if b_eq else None)


def sensitive_requirements(cube: Cube, k: int, p: int | None = None):
    """(labels, quantity, lower, upper) for every sensitive quantity of a table."""
    p = k - 1 if p is None else p
    out = []
    for index in cube.coordinates():
        labels = cube.labels(index)
        x = int(cube.numerator[index])
        if cube.denominator is None:
            quantities = {"numerator": x}
        else:
            n = int(cube.denominator[index])
            quantities = {"numerator": x, "denominator": n, "complement": n - x}
        for quantity, q in quantities.items():
            if q < k:
                out.append((labels, quantity, max(0, q - p), min(k - 1, q + p)))
    return out


def coded_requirements(cube: Cube, k: int, top: float | None, bottom: float | None, status):
    out = []
    if cube.denominator is None:
        return out
    for index in cube.coordinates():
        x, n = int(cube.numerator[index]), int(cube.denominator[index])
        if n == 0 or status[index] == "primary" or min(x, n - x) < k:
            continue
        labels = cube.labels(index)
        if top is not None and 100 * x >= top * n:
            out.append((labels, "complement", k, math.floor(n * (100 - top) / 100 + 1e-9)))
        elif bottom is not None and 100 * x <= bottom * n:
            out.append((labels, "numerator", k, math.floor(n * bottom / 100 + 1e-9)))
    return out
