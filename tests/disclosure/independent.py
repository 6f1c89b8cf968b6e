"""An attacker of everything published from one population, written independently of the
engine (disclosure.lattice, joint, attacker, protection): plain SciPy over the records.

One unknown per *atom*: a combination of one category of every attribute and one submission.
The records are generated with one record per person, so every published count is the sum of
the atoms it covers, exactly. The attacker holds every release: each published count (exact, or
its rounding interval), what each status says (a published cell: every quantity at least k; a
structural zero: 0; a suppressed cell: nothing), the agreement's structural zeros, and
non-negativity. He minimizes and
maximizes every sensitive quantity of every release with ``linprog``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse
from scipy.optimize import linprog

TOTAL = "_T"


@dataclass
class Shown:
    """One published release as the attacker holds it."""

    dims: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    numerator: Mapping[str, str]
    denominator: Mapping[str, str] | None
    scope: frozenset[str]
    k: int
    cells: Sequence[Mapping[str, Any]]
    rounding: str = "none"


def _interval(value: float, rounding: str) -> tuple[float, float]:
    if rounding == "base5":
        return max(0.0, value - 2), value + 2
    if rounding == "midpoint6":
        return value - 2.5, value + 2.5
    return value, value


@dataclass
class Attacker:
    records: pl.DataFrame  # one row per person: attribute labels and "submission"
    categories: Mapping[str, Sequence[str]]
    submissions: Sequence[str]
    releases: Sequence[Shown]
    impossible: Sequence[Mapping[str, str]] = ()
    statuses_only: bool = False
    names: list[str] = field(init=False)
    atoms: list[tuple[str, ...]] = field(init=False)
    truth: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.names = sorted(self.categories)
        grids = [list(self.categories[n]) for n in self.names] + [list(self.submissions)]
        self.atoms = list(itertools.product(*grids))
        index = {atom: i for i, atom in enumerate(self.atoms)}
        self.truth = np.zeros(len(self.atoms))
        for row in self.records.iter_rows(named=True):
            self.truth[index[(*(str(row[n]) for n in self.names), row["submission"])]] += 1
        self.columns = np.array(self.atoms, dtype=object)
        self._rows: list[np.ndarray] = []
        self._lo: list[float] = []
        self._hi: list[float] = []
        self.lb = np.zeros(len(self.atoms))
        self.ub = np.full(len(self.atoms), np.inf)
        for combo in self.impossible:
            self.ub[self._mask(combo, None)] = 0.0
        for release in self.releases:
            self._add(release)

    def _mask(self, fixed: Mapping[str, str], scope: frozenset[str] | None) -> np.ndarray:
        out = np.ones(len(self.atoms), dtype=bool)
        for name, value in fixed.items():
            out &= self.columns[:, self.names.index(name)] == value
        if scope is not None:
            out &= np.isin(self.columns[:, -1], list(scope))
        return out

    def coverage(self, release: Shown, cell: Mapping[str, Any], which: str) -> np.ndarray:
        fixed = {d: str(cell[d]) for d in release.dims if cell[d] != TOTAL}
        slices = release.numerator if which == "x" else release.denominator
        assert slices is not None
        return self._mask({**fixed, **slices}, release.scope).astype(float)

    def _row(self, vector: np.ndarray, lo: float, hi: float) -> None:
        self._rows.append(vector)
        self._lo.append(lo)
        self._hi.append(hi)

    def _add(self, release: Shown) -> None:
        k = release.k
        rate = release.denominator is not None
        for cell in release.cells:
            x = self.coverage(release, cell, "x")
            n = self.coverage(release, cell, "n") if rate else None
            status = cell["status"]
            if status == "structural_zero":
                self._row(x, 0, 0)
                if n is not None:
                    self._row(n, 0, 0)
                continue
            if status == "suppressed":
                # Withheld, small or not: nothing but that a numerator is part of its population.
                if n is not None:
                    self._row(n - x, 0, np.inf)
                continue
            self._row(x, k, np.inf)
            if n is not None:
                self._row(n, k, np.inf)
                self._row(n - x, k, np.inf)
            if self.statuses_only:
                continue
            if cell.get("numerator") is not None:
                self._row(x, *_interval(float(cell["numerator"]), release.rounding))
            if n is not None and cell.get("denominator") is not None:
                self._row(n, *_interval(float(cell["denominator"]), release.rounding))

    def interval(self, vector: np.ndarray) -> tuple[float, float]:
        a = sparse.csr_matrix(np.vstack(self._rows)) if self._rows else None
        lo = np.array(self._lo)
        hi = np.array(self._hi)
        eq = lo == hi
        ub_rows, ub_vals = [], []
        if a is not None:
            for rows, sign, bound in (
                (~eq & np.isfinite(hi), 1.0, hi),
                (~eq & np.isfinite(lo), -1.0, lo),
            ):
                if rows.any():
                    ub_rows.append(sign * a[np.flatnonzero(rows)])
                    ub_vals.append(sign * bound[rows])
        out = []
        for sign in (1.0, -1.0):
            res = linprog(
                sign * vector,
                A_ub=sparse.vstack(ub_rows) if ub_rows else None,
                b_ub=np.concatenate(ub_vals) if ub_vals else None,
                A_eq=a[np.flatnonzero(eq)] if a is not None and eq.any() else None,
                b_eq=lo[eq] if eq.any() else None,
                bounds=list(zip(self.lb, self.ub, strict=True)),
                method="highs",
            )
            if res.status == 3:
                out.append(-np.inf * sign)
                continue
            assert res.status == 0, res.message
            out.append(sign * res.fun)
        return out[0], out[1]

    def sensitive(self) -> list[tuple[int, Mapping[str, Any], str, np.ndarray, int]]:
        """(release index, cell, quantity, its vector, true value) of every quantity under k
        of every suppressed cell."""
        out = []
        for r, release in enumerate(self.releases):
            rate = release.denominator is not None
            for cell in release.cells:
                if cell["status"] != "suppressed":
                    continue
                x = self.coverage(release, cell, "x")
                quantities = {"numerator": x}
                if rate:
                    n = self.coverage(release, cell, "n")
                    quantities |= {"denominator": n, "complement": n - x}
                for name, vector in quantities.items():
                    q = round(float(vector @ self.truth))
                    if q < release.k:
                        out.append((r, cell, name, vector, q))
        return out


def disclosures(
    records: pl.DataFrame,
    categories: Mapping[str, Sequence[str]],
    submissions: Sequence[str],
    releases: Sequence[Shown],
    impossible: Sequence[Mapping[str, str]] = (),
) -> list[str]:
    """Every sensitive quantity of every release whose range, over everything published, does
    not cover every value from 0 to k - 1 that the statuses alone leave possible."""
    attacker = Attacker(records, categories, submissions, releases, impossible)
    baseline = Attacker(records, categories, submissions, releases, impossible, statuses_only=True)
    found = []
    for r, cell, quantity, vector, q in attacker.sensitive():
        k = releases[r].k
        low, high = attacker.interval(vector)
        floor, ceiling = baseline.interval(vector)
        want_low, want_high = max(0.0, floor), min(float(k - 1), ceiling)
        if low > want_low + 1e-6 or high < want_high - 1e-6:
            found.append(
                f"release {r} cell {dict(cell)} {quantity}={q}: attacker range [{low}, {high}],"
                f" protected [{want_low}, {want_high}]"
            )
    return found
