"""Statistical disclosure control of a release: primary and secondary suppression, rounding and
coding, proven safe by an audit of the attacker's linear programs over everything published
from the same records.

``protect(cube, k, ...)`` decides the status and the published form of every cell of one table
(all its margins included) and returns them with the audit that proves them safe.
``protect_jointly(space, truth, release, earlier, ...)`` does the same for a table that sits in
a larger space, the joint cube of a population (:mod:`aggregation.population`), together with
every earlier release of that population: the audit then covers every requirement of every
release at once, in one model of everything the attacker holds.

Protection interval. A primary cell has one or more *sensitive quantities*, those under k: its
numerator x, its complement n - x, its denominator n (a count table has only x). For each, with
protection level p (default k - 1), the interval

    [max(0, q - p), min(k - 1, q + p)]

must lie inside the attacker's feasibility interval [min q, max q] over everything published.
With the default p = k - 1 this is [0, k - 1] whatever q is: *the published tables reveal
nothing about a sensitive quantity beyond what its status already says, that it is under k*.
The cap at k - 1 is there because the status ``primary`` is itself published: an attacker who
knows a cell is primary knows (in a count table) that it is under k, so no arrangement can make
him doubt that, and an upper protection reaching past k - 1, as in the textbook form
[q - p, q + p], could never be met once statuses are public. This is the protection-level
formulation of tau-ARGUS and sdcTable (a lower and an upper protection level per unsafe cell,
required of the attacker's LP interval), with the levels set as high as the threshold allows,
and with the status knowledge (primary cells under k, all other cells at least k) added to the
attacker's model, which neither tool does. A coded cell (published as ">= 95%") protects its
complement (resp. numerator) over the whole coded range [k, floor(n * (100 - top) / 100)]
(resp. [k, floor(n * bottom / 100)]): additivity must not give the exact rate back. Secondary
cells are not sensitive and carry no interval, as in tau-ARGUS and sdcTable: their status says
they are at least k, and nothing published pins them (an exact value would have been free).

When even suppressing the whole release cannot meet an interval, because the statuses (every
secondary cell is at least k) or earlier releases already reveal more, the requirement becomes
exactly what the fully suppressed release leaves the attacker: this release may not narrow it
any further. Such checks are marked ``limited`` in the audit, with the interval they stand for.

Method: iterative, and safe by construction at each step.

1. Primary suppression (:mod:`disclosure.suppression`); coding of the remaining rates. Cells
   that an earlier release of the same counts already suppressed are suppressed again.
2. One hypercube per sensitive quantity (:mod:`disclosure.hypercube`, after GHMITER): a cheap,
   vectorized first pattern whose moves double as witnesses for the audit. No hypercube may
   suppress a headline margin (see *Margins* below).
3. The audit (:mod:`disclosure.attacker`): min and max linear programs (HiGHS) of every
   requirement not already settled by a verified witness, over the joint model of this release
   and every earlier release of the same records. Most sides are settled in bulk first, by
   programs that push many quantities to their goals at once (``ReachedRanges.sweep``).
4. At the first requirement found violated, a minimum-cost perturbation program (the linear
   relaxation of the Fischetti-Salazar model for that one cell): find a point of the attacker's
   polytope, with every not-yet-suppressed cell of this release free to move at a cost of its
   population per unit, where the quantity reaches the end of its interval; suppress every cell
   that moved. That point is a witness of the new pattern, so the requirement holds. Suppressing
   more only relaxes the attacker's model, so no requirement settled earlier is ever undone.
5. Repeat 3-4 on the new pattern until every requirement of every release is proven. Earlier
   releases are immutable: their cells are constants or unknowns of the model, never candidates.

Margins. The totals of a table are what its readers look at first (a dashboard shows the
period totals and the overall rate before any breakdown), and each stands for hundreds or
thousands of people, whom complementary interior cells protect far more cheaply. So the table's
headline margins, its one-dimensional margins and the grand total (every margin of a table of
one or two dimensions), are *reserved*: no hypercube suppresses one, and a perturbation program
first looks for a point with all of them held at their published values; only when there is
none (the requirement cannot be met otherwise) does it try again holding only the higher ones,
down to the grand total, then none. This is the lexicographic form of the tau-ARGUS/sdcTable
practice of giving margins a prohibitive cost, without a cost so large that it would hurt the
solver's numerics.

An optimal MILP (one binary per cell and one flow per requirement, as tau-ARGUS's "optimal")
was rejected: for a 1,700-cell table with hundreds of sensitive cells it has millions of
variables. The heuristic may suppress more than the optimum; it never suppresses less than
safety needs, and the audit, not the heuristic, is what proves it.

Rounding (``base5`` / ``midpoint6``, :mod:`disclosure.rounding`) applies to published cells
after suppression; the audit treats each rounded count as its interval, so a rounded table is
audited for what it really reveals (rounding only ever widens the attacker's intervals).

Earlier releases whose records have changed since (a submission withdrawn or replaced) are
placed on what is left of their records, with the difference between their own true counts and
the counts of the space taken as known to the attacker (``EarlierRelease.x``/``n``): the
strongest assumption, so the audit errs on the safe side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from core.errors import Conflict
from disclosure import rounding as rnd
from disclosure.attacker import (
    TOL,
    Check,
    Facts,
    Geometry,
    Knowledge,
    Model,
    ModelInconsistent,
    ReachedRanges,
    Requirement,
    Space,
    Witnesses,
    form_of,
)
from disclosure.cube import Cube
from disclosure.hypercube import Move, Need, Table, choose_moves, forced
from disclosure.lp import INFEASIBLE, OPTIMAL, Program, Solution
from disclosure.suppression import (
    COMPLEMENT,
    DENOMINATOR,
    FREE,
    NUMERATOR,
    PRIMARY,
    ROUNDED,
    SECONDARY,
    STRUCTURAL,
    SUPPRESSED,
    check_k,
    sensitive,
)
from disclosure.vocabulary import UNIT_SCALE, Unit
from policy.vocabulary import RoundingScheme

_PROBES = 8  # sides probed with single programs before a sweep's groups (see protect)
_BATCH = 8  # violated requirements taken into one round of perturbation programs
TOP = "top"
BOTTOM = "bottom"


class LinkedReleaseMismatch(Conflict):
    kind = "linked-release-mismatch"
    title = "An earlier release does not match this data"


class ProtectionImpossible(Conflict):
    kind = "release-unprotectable"
    title = "The release cannot be protected"


@dataclass(frozen=True)
class PublishedTable:
    """What a release published: the attacker's view of it.

    ``numerator``/``denominator`` hold the published numbers (NaN where withheld); ``coded`` is
    ``"top"``/``"bottom"`` for coded cells and ``""`` elsewhere. All arrays have the table's
    shape (one index per category plus the total, per dimension).
    """

    dimensions: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    status: np.ndarray
    numerator: np.ndarray
    denominator: np.ndarray | None
    k: int
    rounding: str = RoundingScheme.NONE.value
    coded: np.ndarray | None = None
    top_code_percent: float | None = None
    bottom_code_percent: float | None = None
    protection_level: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) + 1 for c in self.categories)


@dataclass(frozen=True)
class Placement:
    """Where the counts of a table's cells sit in a space (flat table order): the variable of
    each cell's numerator and, for a rate table, of its denominator."""

    x: np.ndarray
    n: np.ndarray | None


@dataclass(frozen=True)
class EarlierRelease:
    """An earlier release placed in the space, with the true counts of its own records.

    ``x``/``n`` are the counts the release was computed from (flat table order). Where they
    differ from the space's counts at the same place (its records have changed since), the
    difference is taken as known to the attacker.
    """

    table: PublishedTable
    placement: Placement
    x: np.ndarray
    n: np.ndarray | None
    # Requirements of its own that were limited when it was published (see the module's
    # docstring): (cell, quantity) -> the interval its audit held them to, in its own counts.
    limits: Mapping[tuple[int, str], tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Proof:
    """The proof: one check per requirement of every release in the model."""

    checks: tuple[Check, ...]
    programs: int  # linear programs solved (audit and perturbation)
    witnesses: int  # verified witness points used
    hypercubes: int  # hypercube moves of the first pass
    perturbations: int  # perturbation programs that added suppressions
    linked_tables: int
    seconds: Mapping[str, float] = field(default_factory=dict)  # primary, secondary, audit
    joint: bool = False  # audited jointly with earlier releases in the population's space
    reused: bool = False  # every cell already published alike: nothing new to audit

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def limits(self) -> dict[tuple[int, str], tuple[float, float]]:
        """The release's own limited requirements and the intervals they were held to (what
        a later joint audit holds them to again)."""
        return {
            (c.requirement.cell, c.requirement.quantity): (
                c.requirement.lower,
                c.requirement.upper,
            )
            for c in self.checks
            if c.limited and c.requirement.table == 0
        }

    def violations(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> dict[str, Any]:
        return {
            "requirements": len(self.checks),
            "violations": len(self.violations()),
            "programs": self.programs,
            "witnesses": self.witnesses,
            "hypercubes": self.hypercubes,
            "perturbations": self.perturbations,
            "linked_tables": self.linked_tables,
            "limited": sum(1 for c in self.checks if c.limited),
            "joint": self.joint,
            "reused": self.reused,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


@dataclass(frozen=True)
class Protection:
    """The protected release: status and published form of every cell, and the proof that it is safe.

    Object arrays with the table's shape; ``numerator``/``denominator``/``value``/``lower``/
    ``upper`` hold what is published (None when withheld). Rounded counts are ints under base 5
    and half-integers (band midpoints) under midpoint-6.
    """

    table: Cube
    k: int
    status: np.ndarray
    numerator: np.ndarray
    denominator: np.ndarray | None
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    rounding: str
    top_code_percent: float | None
    bottom_code_percent: float | None
    protection_level: int | None
    proof: Proof
    coded: np.ndarray = field(repr=False)

    def published(self) -> PublishedTable:
        """This release as the attacker sees it, for the next one."""

        def numbers(a: np.ndarray) -> np.ndarray:
            return np.array([np.nan if v is None else float(v) for v in a.ravel()]).reshape(a.shape)

        return PublishedTable(
            dimensions=self.table.dimensions,
            categories=self.table.categories,
            status=np.vectorize(published_status, otypes=[object])(self.status),
            numerator=numbers(self.numerator),
            denominator=None if self.denominator is None else numbers(self.denominator),
            k=self.k,
            rounding=self.rounding,
            coded=self.coded.copy(),
            top_code_percent=self.top_code_percent,
            bottom_code_percent=self.bottom_code_percent,
            protection_level=self.protection_level,
        )


def published_status(status: str) -> str:
    """The status a reader sees: ``suppressed`` for every withheld cell, small or withheld to
    protect another, since that difference would itself tell on which side of k a cell lies."""
    return SUPPRESSED if status in (PRIMARY, SECONDARY) else status


# --------------------------------------------------------------------------------------------
# Layers: the tables of the model, each placed in the space


@dataclass
class _Layer:
    """One table (release) of the model: where its cells sit, its counts and its status."""

    index: int
    shape: tuple[int, ...]  # the table's own shape
    x_var: np.ndarray  # variable of each table cell's numerator (flat)
    n_var: np.ndarray | None
    x: np.ndarray  # true numerator of each table cell, of the table's own records
    n: np.ndarray | None
    x_shift: np.ndarray  # own count minus the space's count at x_var (known to the attacker)
    n_shift: np.ndarray | None
    k: int
    p: int
    small: dict[str, np.ndarray]
    primary: np.ndarray
    structural: np.ndarray  # known to be empty (the agreement declares it impossible)
    hidden: np.ndarray
    coded: np.ndarray  # object: "", "top", "bottom"
    top: float | None
    bottom: float | None
    # Published intervals of the true counts (NaN where withheld).
    x_lo: np.ndarray
    x_hi: np.ndarray
    n_lo: np.ndarray | None
    n_hi: np.ndarray | None
    limits: Mapping[tuple[int, str], tuple[float, float]] = field(default_factory=dict)

    def quantity(self, i: int, quantity: str) -> tuple[dict[int, float], float, int]:
        """(form over the space, shift of the form, true value of the table's own count)."""
        if quantity == NUMERATOR:
            return {int(self.x_var[i]): 1.0}, float(self.x_shift[i]), int(self.x[i])
        assert self.n is not None and self.n_var is not None and self.n_shift is not None
        if quantity == DENOMINATOR:
            return {int(self.n_var[i]): 1.0}, float(self.n_shift[i]), int(self.n[i])
        return (
            {int(self.n_var[i]): 1.0, int(self.x_var[i]): -1.0},
            float(self.n_shift[i] - self.x_shift[i]),
            int(self.n[i] - self.x[i]),
        )


def _requirements(layer: _Layer) -> list[Requirement]:
    out: list[Requirement] = []
    k, p = layer.k, layer.p
    for quantity, mask in layer.small.items():
        for i in np.flatnonzero(mask):
            form, shift, q = layer.quantity(int(i), quantity)
            lower, upper = layer.limits.get(
                (int(i), quantity), (float(max(0, q - p)), float(min(k - 1, q + p)))
            )
            out.append(
                Requirement(
                    layer.index,
                    int(i),
                    quantity,
                    form_of(form),
                    lower - shift,
                    upper - shift,
                    "primary" if (int(i), quantity) not in layer.limits else "limited",
                )
            )
    if layer.n is not None:
        for i in np.flatnonzero(layer.coded != ""):
            n = int(layer.n[i])
            if layer.coded[i] == TOP:
                assert layer.top is not None
                top = math.floor(n * (100.0 - layer.top) / 100.0 + 1e-9)
                form, shift, _ = layer.quantity(int(i), COMPLEMENT)
                out.append(
                    Requirement(
                        layer.index,
                        int(i),
                        COMPLEMENT,
                        form_of(form),
                        k - shift,
                        top - shift,
                        "top_coded",
                    )
                )
            else:
                assert layer.bottom is not None
                bottom = math.floor(n * layer.bottom / 100.0 + 1e-9)
                form, shift, _ = layer.quantity(int(i), NUMERATOR)
                out.append(
                    Requirement(
                        layer.index,
                        int(i),
                        NUMERATOR,
                        form_of(form),
                        k - shift,
                        bottom - shift,
                        "bottom_coded",
                    )
                )
    return out


def _facts(
    nvars: int, layers: Sequence[_Layer], relax: np.ndarray | None, zeros: np.ndarray
) -> Facts:
    """What the attacker knows when each layer shows its pattern.

    ``zeros`` are the variables the agreements declare structurally empty (public knowledge).
    ``relax`` (for the perturbation programs) marks cells of layer 0 that may be withheld: they
    state nothing, and every one that moves is withheld, so a point of the relaxed model is a
    point of the real one once the cells that moved are withheld.
    """
    facts = Facts(nvars)
    facts.within(zeros, 0.0, 0.0)
    for layer in layers:
        k = float(layer.k)
        ex, xs = layer.x_var, layer.x_shift
        live = ~layer.structural
        facts.within(ex[layer.structural], -xs[layer.structural], -xs[layer.structural])
        # A withheld cell says nothing: Backbone publishes one status for every withheld cell,
        # small or not. A published cell says its value (or rounding interval) and that every
        # quantity of it is at least k (a small one would have been withheld).
        shown = ~layer.hidden & live
        # A relaxed cell that moves will be withheld (and then says nothing); one that does not
        # stays at its true counts, which satisfy what it says.
        numbers = shown if relax is None or layer.index != 0 else shown & ~relax
        facts.at_least(ex[numbers], k - xs[numbers])
        whole = numbers & (layer.coded == "")
        facts.within(ex[whole], layer.x_lo[whole] - xs[whole], layer.x_hi[whole] - xs[whole])
        if layer.n_var is None:
            continue
        assert layer.n_shift is not None and layer.n_lo is not None and layer.n_hi is not None
        en, ns = layer.n_var, layer.n_shift
        cs = ns - xs
        facts.within(en[layer.structural], -ns[layer.structural], -ns[layer.structural])
        facts.at_least(en[numbers], k - ns[numbers])
        facts.complement(ex[numbers], en[numbers], k - cs[numbers], np.inf)
        facts.complement(ex[live], en[live], -cs[live], np.inf)  # the numerator is a subset
        facts.within(
            en[numbers], layer.n_lo[numbers] - ns[numbers], layer.n_hi[numbers] - ns[numbers]
        )
        for side, percent in ((TOP, layer.top), (BOTTOM, layer.bottom)):
            cells = numbers & (layer.coded == side)
            if not np.any(cells):
                continue
            assert percent is not None
            # 100 (x + xs) - percent (n + ns) >= 0 (at most 0 at the bottom)
            constant = -100.0 * xs[cells] + percent * ns[cells]
            if side == TOP:
                facts.pair(ex[cells], en[cells], 100.0, -percent, constant, np.inf)
            else:
                facts.pair(ex[cells], en[cells], 100.0, -percent, -np.inf, constant)
    return facts


def _earlier_layer(index: int, earlier: EarlierRelease, truth: np.ndarray) -> _Layer:
    table = earlier.table
    rate = table.denominator is not None
    placement = earlier.placement
    if rate != (placement.n is not None) or rate != (earlier.n is not None):
        raise LinkedReleaseMismatch("An earlier release is not of the same kind of table.")
    x = np.asarray(earlier.x, dtype=np.int64).ravel()
    n = None if earlier.n is None else np.asarray(earlier.n, dtype=np.int64).ravel()
    status = table.status.ravel()
    structural = status == STRUCTURAL
    small = sensitive(x, n, table.k, structural)
    hidden = np.isin(status, [SUPPRESSED, PRIMARY, SECONDARY])
    # Its statuses must be those of its own records: every cell with a quantity under k withheld.
    primary = np.zeros(x.shape, dtype=bool)
    for mask in small.values():
        primary |= mask
    empty = (n if n is not None else x) == 0
    if np.any(primary & ~hidden) or np.any(structural & ~empty):
        raise LinkedReleaseMismatch("An earlier release was computed from other data.")
    coded = (
        table.coded.ravel().astype(object)
        if table.coded is not None
        else np.full(x.shape, "", dtype=object)
    )
    num = table.numerator.ravel()
    x_lo = np.full(x.shape, np.nan)
    x_hi = np.full(x.shape, np.nan)
    shown = ~np.isnan(num)
    for i in np.flatnonzero(shown):
        x_lo[i], x_hi[i] = rnd.interval_of(float(num[i]), table.rounding)
    n_lo = n_hi = None
    if table.denominator is not None:
        den = table.denominator.ravel()
        n_lo = np.full(x.shape, np.nan)
        n_hi = np.full(x.shape, np.nan)
        for i in np.flatnonzero(~np.isnan(den)):
            n_lo[i], n_hi[i] = rnd.interval_of(float(den[i]), table.rounding)
    withheld = ~hidden & ~structural & (coded == "") & ~shown
    if np.any(withheld):
        raise LinkedReleaseMismatch("An earlier release withholds a cell it marks as published.")
    x_var = np.asarray(placement.x, dtype=np.int64)
    n_var = None if placement.n is None else np.asarray(placement.n, dtype=np.int64)
    return _Layer(
        index=index,
        shape=table.shape,
        x_var=x_var,
        n_var=n_var,
        x=x,
        n=n,
        x_shift=(x - truth[x_var]).astype(float),
        n_shift=None if n is None or n_var is None else (n - truth[n_var]).astype(float),
        k=table.k,
        p=table.k - 1 if table.protection_level is None else table.protection_level,
        small=small,
        primary=primary,
        structural=structural,
        hidden=hidden,
        coded=coded,
        top=table.top_code_percent,
        bottom=table.bottom_code_percent,
        x_lo=x_lo,
        x_hi=x_hi,
        n_lo=n_lo,
        n_hi=n_hi,
        limits=earlier.limits,
    )


# (program, relaxed variables of the component, which of them may deviate (split into e+ and
# e-), which stay plain columns, and the rows' shift from substituting the truth)
_PerturbProgram = tuple[Program, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class _Perturber:
    """Minimum-cost perturbation programs over the model with every movable cell relaxed.

    The relaxed model (each not-yet-suppressed cell of the release unknown, but still known to
    be at least k and inside its code) does not depend on the pattern, so it is built once per
    release; the pattern only sets which cells cost something to move. Variables per connected
    component: z (the relaxed unknowns) and e+, e- >= 0 with z - e+ + e- = truth on the
    variables of relaxed cells. A requirement is imposed as a bound on its quantity (a column
    bound for x or n, the n - x row for the complement) and removed after the solve.
    """

    def __init__(
        self,
        space: Space,
        layers: Sequence[_Layer],
        truth: np.ndarray,
        zeros: np.ndarray,
        relax: np.ndarray,
        weight: np.ndarray,
    ) -> None:
        self.space = space
        self.release = layers[0]
        self.relax = relax
        self.weight = weight
        self.model = Model(Knowledge.build(space, _facts(space.nvars, layers, relax, zeros), truth))
        self.truth = self.model.knowledge.truth
        cell_of = np.full(space.nvars, -1, dtype=np.int64)
        is_numerator = np.zeros(space.nvars, dtype=bool)
        cells = np.flatnonzero(relax)
        cell_of[self.release.x_var[cells]] = cells
        is_numerator[self.release.x_var[cells]] = True
        if self.release.n_var is not None:
            cell_of[self.release.n_var[cells]] = cells
        self.cell_of = cell_of
        self.is_numerator = is_numerator
        self._programs: dict[int, _PerturbProgram] = {}

    def _program(self, label: int) -> _PerturbProgram:
        cached = self._programs.get(label)
        if cached is not None:
            return cached
        model = self.model
        comp = model._component(label)
        var_ids = comp.variables
        base = comp.program
        dev = np.flatnonzero(self.cell_of[var_ids] >= 0)
        keep = np.flatnonzero(self.cell_of[var_ids] < 0)
        # Substitute z = truth + e+ - e- on the relaxed cells' variables: the columns of e+ and
        # e- are those of z, with bounds that keep z inside its own bounds.
        t = self.truth[var_ids[dev]]
        a = base.a
        shift = a[:, dev] @ t
        matrix = sp.hstack([a[:, keep], a[:, dev], -a[:, dev]], format="csc")
        program = Program(
            matrix,
            base.row_lb - shift,
            base.row_ub - shift,
            np.concatenate([base.col_lb[keep], np.zeros(2 * dev.size)]),
            np.concatenate([base.col_ub[keep], base.col_ub[dev] - t, t - base.col_lb[dev]]),
        )
        cached = (program, var_ids, dev, keep, shift)
        self._programs[label] = cached
        return cached

    def _costs(
        self, var_ids: np.ndarray, dev: np.ndarray, numerator_hidden: np.ndarray
    ) -> np.ndarray:
        """Cost per unit of deviation: the cell's weight if that number is published now."""
        cells = self.cell_of[var_ids[dev]]
        shown = ~self.release.hidden[cells]
        numerator = self.is_numerator[var_ids[dev]]
        published = shown & ~(numerator & numerator_hidden[cells])
        per_unit = np.where(published, self.weight[cells], 0.0) + 1e-3  # ties: move less
        return np.concatenate([per_unit, per_unit])

    @staticmethod
    def _with_target(
        program: Program,
        var_ids: np.ndarray,
        dev: np.ndarray,
        keep: np.ndarray,
        truth: np.ndarray,
        local: int,
        coef: float,
        goal: float,
        maximize: bool,
    ) -> Any:
        """Solve with coef * z_local pushed to ``goal`` (>= when maximizing), then undo."""
        bound = goal / coef
        upward = (coef > 0) == maximize
        where = np.flatnonzero(keep == local)
        if where.size:
            col = where
            old = (program.col_lb[col].copy(), program.col_ub[col].copy())
            if upward:
                program.set_col_bounds(col, np.maximum(old[0], bound), old[1])
            else:
                program.set_col_bounds(col, old[0], np.minimum(old[1], bound))
            solution = program.solve()
            program.set_col_bounds(col, *old)
            return solution
        # A relaxed variable: z = t + e+ - e-. Moving up: e+ >= goal - t and e- = 0 (so that
        # the move cannot be undone by its own opposite); moving down, the other way round.
        j = int(np.flatnonzero(dev == local)[0])
        gap = bound - truth[j] if upward else truth[j] - bound
        push = np.array([keep.size + j if upward else keep.size + dev.size + j])
        hold = np.array([keep.size + dev.size + j if upward else keep.size + j])
        cols = np.concatenate([push, hold])
        old = (program.col_lb[cols].copy(), program.col_ub[cols].copy())
        if gap > old[1][0] + TOL:
            # The goal lies beyond what the variable's own bounds allow: no point reaches it.
            return Solution(INFEASIBLE, np.nan, None)
        program.set_col_bounds(
            cols,
            np.array([max(old[0][0], gap), 0.0]),
            np.array([old[1][0], 0.0]),
        )
        solution = program.solve()
        program.set_col_bounds(cols, *old)
        return solution

    def run(
        self, requirement: Requirement, maximize: bool, numerator_hidden: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Cells of the release to suppress and the witness, or None if no move reaches it."""
        model = self.model
        const, rest = model.constant_part(dict(requirement.form))
        if not rest:
            return None
        labels = {model.component_of(v) for v in rest}
        if len(labels) != 1:  # pragma: no cover - x and n of a cell share their n - x row
            return None
        label = labels.pop()
        program, var_ids, dev, keep, shift = self._program(label)
        nk, m = keep.size, dev.size
        program.set_cost(np.arange(nk, nk + 2 * m), self._costs(var_ids, dev, numerator_hidden))
        goal = requirement.upper if maximize else requirement.lower
        if len(rest) == 1:
            # Bound x or n: a row of its own (its columns are split when it may move).
            ((var, coef),) = rest.items()
            local = int(np.flatnonzero(var_ids == var)[0])
            solution = self._with_target(
                program,
                var_ids,
                dev,
                keep,
                self.truth[var_ids[dev]],
                local,
                coef,
                goal - const,
                maximize,
            )
        else:
            reduced = model.fact_row(rest)
            if reduced < 0:  # pragma: no cover - every complement of a rate cell has its row
                return None
            comp_rows = model._component(label).rows
            row = np.searchsorted(comp_rows, np.array([reduced]))
            old = (program.row_lb[row].copy(), program.row_ub[row].copy())
            bound = goal - const - shift[row]
            if maximize:
                program.set_row_bounds(row, np.maximum(old[0], bound), old[1])
            else:
                program.set_row_bounds(row, old[0], np.minimum(old[1], bound))
            solution = program.solve()
            program.set_row_bounds(row, *old)
        if solution.status != OPTIMAL or solution.x is None:
            return None
        plus = solution.x[nk : nk + m]
        minus = solution.x[nk + m :]
        moved = plus + minus
        point = model.base.copy()
        point[var_ids[keep]] = solution.x[:nk]
        still = moved <= 1e-7
        point[var_ids[dev]] = self.truth[var_ids[dev]] + np.where(still, 0.0, plus - minus)
        cells = np.zeros(self.relax.shape, dtype=bool)
        cells[self.cell_of[var_ids[dev[~still]]]] = True
        cells &= ~self.release.hidden
        return cells, point


def _levels(shape: tuple[int, ...]) -> np.ndarray:
    """Per cell of a table (flat), how many of its coordinates are the total: 0 for an interior
    cell, one per dimension for the grand total."""
    if not shape:
        return np.zeros(1, dtype=np.int64)
    index = np.indices(shape).reshape(len(shape), -1)
    levels: np.ndarray = (index == (np.asarray(shape) - 1)[:, None]).sum(axis=0)
    return levels


def _tiers(levels: np.ndarray, dimensions: int) -> list[np.ndarray]:
    """Cells held published by each tier of the perturbation programs, strictest first.

    The first tier holds the table's headline figures: the grand total and the one-dimensional
    margins (every margin of a table of one or two dimensions), i.e. the period totals and
    overall rates a dashboard shows first, each standing for hundreds or thousands of people.
    The next tiers hold only higher margins, down to the grand total, and the last none.
    """
    none = np.zeros(levels.shape, dtype=bool)
    if dimensions == 0:
        return [none]
    return [levels >= level for level in range(max(1, dimensions - 1), dimensions + 1)] + [none]


class _Search:
    """The perturbation programs of secondary suppression, tier by tier (see :func:`_tiers`).

    A side of a requirement is first sought with the first tier's margins held at their
    published values, so the perturbation may move only interior cells and lower margins; only
    when no such point exists is the next tier tried, with fewer margins held, down to none.
    A headline margin is thereby suppressed only when it is unavoidable for some requirement:
    the lexicographic form of the tau-ARGUS/sdcTable practice of giving totals a prohibitive
    cost, without a cost so large that it would hurt the solver's numerics. Within a tier, the
    cost of moving a published cell is its population per unit, so small cells are preferred.
    """

    def __init__(
        self,
        space: Space,
        layers: Sequence[_Layer],
        truth: np.ndarray,
        zeros: np.ndarray,
        movable: np.ndarray,
        weight: np.ndarray,
        tiers: Sequence[np.ndarray],
        numerator_hidden: np.ndarray,
    ) -> None:
        self.space = space
        self.layers = layers
        self.release = layers[0]
        self.truth = truth
        self.zeros = zeros
        self.movable = movable
        self.weight = weight
        self.tiers = list(tiers)
        self.numerator_hidden = numerator_hidden
        self.programs = 0
        self.perturbations = 0
        self._perturbers: dict[int, tuple[_Perturber, np.ndarray]] = {}
        self._limited: set[tuple[int, bool]] = set()

    def _held(self, tier: int) -> np.ndarray:
        held: np.ndarray = self.tiers[tier] & self.movable & ~self.release.hidden
        return held

    def _perturber(self, tier: int, *, fresh: bool = False) -> _Perturber:
        """The tier's perturber. Its model holds the cells held when it was built; a held cell
        suppressed since only makes it stricter (its points stay points of the real model), so
        it is rebuilt only on demand (``fresh``)."""
        held = self._held(tier)
        cached = self._perturbers.get(tier)
        if cached is None or (fresh and not np.array_equal(cached[1], held)):
            relax = self.movable & ~held
            cached = (
                _Perturber(self.space, self.layers, self.truth, self.zeros, relax, self.weight),
                held,
            )
            self._perturbers[tier] = cached
        return cached[0]

    def perturb(
        self, requirement: Requirement, maximize: bool
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Cells to suppress and the witness for one side, from the strictest tier that has
        one; None if no tier has (not even with the whole release suppressed)."""
        tried: list[np.ndarray] = []
        for tier in range(len(self.tiers)):
            held = self._held(tier)
            if any(np.array_equal(held, t) for t in tried):
                continue
            tried.append(held)
            perturber = self._perturber(tier)
            result = perturber.run(requirement, maximize, self.numerator_hidden)
            self.programs += 1
            if result is None:
                rebuilt = self._perturber(tier, fresh=True)
                if rebuilt is not perturber:
                    result = rebuilt.run(requirement, maximize, self.numerator_hidden)
                    self.programs += 1
            if result is not None:
                return result
        return None

    def round(self, ledger: ReachedRanges, bad: Sequence[int]) -> list[np.ndarray]:
        """Perturbation programs for the open sides of the requirements ``bad``, in order.

        Returns the points found: each is a witness of the pattern the round leaves (later
        perturbations only suppress more), to be verified against that pattern's model. A side
        that an earlier point of the round already reaches gets no program.
        """
        pending: list[np.ndarray] = []
        lows, highs = ledger.lows.copy(), ledger.highs.copy()
        for i in bad:
            for maximize in (True, False):
                if maximize and highs[i] >= ledger.upper[i] - TOL:
                    continue
                if not maximize and lows[i] <= ledger.lower[i] + TOL:
                    continue
                point = self._side(ledger, i, maximize)
                if point is not None:
                    pending.append(point)
                    values = ledger.forms @ point
                    np.minimum(lows, values, out=lows)
                    np.maximum(highs, values, out=highs)
        return pending

    def _side(self, ledger: ReachedRanges, i: int, maximize: bool) -> np.ndarray | None:
        requirement = ledger.requirements[i]
        candidates = ~self.release.hidden & self.movable
        target = (
            replace(requirement, upper=float(ledger.upper[i]))
            if maximize
            else replace(requirement, lower=float(ledger.lower[i]))
        )
        result = self.perturb(target, maximize) if np.any(candidates) else None
        if result is None and (i, maximize) not in self._limited:
            # Not even suppressing the whole release reaches it: the statuses (or earlier
            # releases) already reveal this much. Require what full suppression leaves.
            everything = self._perturber(len(self.tiers) - 1)
            best = everything.model.optimize(dict(requirement.form), maximize)
            self.programs += 1
            # "fixed": earlier releases (or a structural zero) already determine it exactly.
            if best.status in ("optimal", "unbounded", "fixed"):
                self._limited.add((i, maximize))
                ledger.limit(i, maximize, best.value)
                if not np.any(candidates) or best.status == "fixed":
                    return best.point  # the fully relaxed model is the real one
                return self._side(ledger, i, maximize)
        if result is None:
            if not np.any(candidates):
                raise ProtectionImpossible(  # pragma: no cover - only on numerical failure
                    "The audit could not prove a requirement that full suppression meets."
                )
            # No perturbation reaches even the limited goal (numerical trouble): suppress
            # every remaining cell of the release and leave the proof to the exact programs.
            self.release.hidden |= candidates
            return None
        cells, point = result
        if np.any(cells):
            self.release.hidden |= cells
            self.perturbations += 1
        return point


# --------------------------------------------------------------------------------------------
# Entry points


def _check_unit(unit: str | None, rate: bool) -> str:
    unit = unit or (Unit.PERCENT if rate else Unit.COUNT)
    if unit not in UNIT_SCALE or (unit == Unit.COUNT) == rate:
        raise ValueError(
            "unit must be count for a count table, percent or rate_per_1000 for a rate"
        )
    return unit


def protect(
    cube: Cube,
    k: int,
    *,
    dimensions: Sequence[str] | None = None,
    unit: str | None = None,
    rounding: str = RoundingScheme.NONE.value,
    top_code_percent: float | None = None,
    bottom_code_percent: float | None = None,
    protection_level: int | None = None,
    structural: np.ndarray | None = None,
    exact_audit: bool = False,
    timer: Callable[[], float] | None = None,
) -> Protection:
    """Protect the table of ``dimensions`` (default: all of the cube's) under threshold ``k``,
    on its own.

    ``unit`` ("count", "percent", "rate_per_1000"; default "count" for a count table and
    "percent" for a rate) only shapes the published values. ``protection_level`` is p above
    (default k - 1). ``structural`` marks the cells (table shape) the agreement declares
    impossible, published as structural zeros. ``exact_audit`` solves every audit program
    instead of accepting verified witnesses (slower; the result is the same, the report has
    exact intervals). ``timer`` (``time.perf_counter``, say) times the phases for the audit
    report; the engine reads no clock of its own.
    """
    dims = tuple(cube.dimensions if dimensions is None else dimensions)
    table = cube.project(dims) if dims != cube.dimensions else cube
    rate = table.denominator is not None
    geometry = Geometry(table.shape, rate)
    size = geometry.size
    truth = table.numerator.ravel().astype(float)
    if table.denominator is not None:
        truth = np.concatenate([truth, table.denominator.ravel().astype(float)])
    placement = Placement(np.arange(size), np.arange(size, 2 * size) if rate else None)
    return protect_jointly(
        geometry.space,
        truth,
        table,
        placement,
        k,
        unit=unit,
        rounding=rounding,
        top_code_percent=top_code_percent,
        bottom_code_percent=bottom_code_percent,
        protection_level=protection_level,
        structural=structural,
        exact_audit=exact_audit,
        timer=timer,
    )


def protect_jointly(
    space: Space,
    truth: np.ndarray,
    table: Cube,
    placement: Placement,
    k: int,
    *,
    earlier: Sequence[EarlierRelease] = (),
    zeros: np.ndarray | None = None,
    unit: str | None = None,
    rounding: str = RoundingScheme.NONE.value,
    top_code_percent: float | None = None,
    bottom_code_percent: float | None = None,
    protection_level: int | None = None,
    structural: np.ndarray | None = None,
    implied: np.ndarray | None = None,
    exact_audit: bool = False,
    timer: Callable[[], float] | None = None,
) -> Protection:
    """Protect ``table``, whose counts sit at ``placement`` in ``space`` (``truth`` holds the
    space's true counts), together with every ``earlier`` release placed in the same space.

    ``implied`` are counts of the space that no release publishes as a cell but that the
    publications together determine (the children not ready, from a count of all children and
    a count of the ready ones): each under k is protected like a primary cell.

    ``zeros`` are the space's variables that are structurally empty (public knowledge).
    Raises
    :class:`LinkedReleaseMismatch` when an earlier release contradicts its own counts.
    """
    read = timer if timer is not None else _no_timer
    clock = read()
    seconds = {"primary": 0.0, "secondary": 0.0, "audit": 0.0}

    def lap(name: str) -> None:
        nonlocal clock
        now = read()
        seconds[name] += now - clock
        clock = now

    k = check_k(k)
    rnd.check_scheme(rounding)
    p = k - 1 if protection_level is None else int(protection_level)
    if p < 0:
        raise ValueError("the protection level is never negative")
    rate = table.denominator is not None
    if rate != (placement.n is not None):
        raise ValueError("a rate table needs a denominator placement, a count table none")
    unit = _check_unit(unit, rate)
    if (top_code_percent is not None or bottom_code_percent is not None) and not rate:
        top_code_percent = bottom_code_percent = None  # coding applies to rates only
    truth = np.asarray(truth, dtype=float).ravel()
    zero_vars = np.zeros(0, dtype=np.int64) if zeros is None else np.asarray(zeros, dtype=np.int64)

    # Layer 0: the release.
    x = table.numerator.ravel()
    n = table.denominator.ravel() if table.denominator is not None else None
    known_empty = (
        np.zeros(x.shape, dtype=bool)
        if structural is None
        else np.asarray(structural, dtype=bool).ravel()
    )
    if np.any((n if n is not None else x)[known_empty] != 0):
        raise LinkedReleaseMismatch("A structural zero of the agreement holds records.")
    small = sensitive(x, n, k, known_empty)
    primary = np.zeros(x.shape, dtype=bool)
    for mask in small.values():
        primary |= mask
    coded = np.full(x.shape, "", dtype=object)
    if n is not None:
        top_mask, bottom_mask = rnd.coded(x, n, top_code_percent, bottom_code_percent)
        coded[top_mask & ~primary & ~known_empty] = TOP
        coded[bottom_mask & ~primary & ~known_empty & (coded == "")] = BOTTOM
    xr = rnd.round_counts(x, rounding)
    nr = rnd.round_counts(n, rounding) if n is not None else None
    x_var = np.asarray(placement.x, dtype=np.int64)
    n_var = None if placement.n is None else np.asarray(placement.n, dtype=np.int64)
    release = _Layer(
        index=0,
        shape=table.shape,
        x_var=x_var,
        n_var=n_var,
        x=x,
        n=n,
        x_shift=np.zeros(x.shape),
        n_shift=None if n is None else np.zeros(x.shape),
        k=k,
        p=p,
        small=small,
        primary=primary,
        structural=known_empty,
        hidden=primary.copy(),
        coded=coded,
        top=top_code_percent,
        bottom=bottom_code_percent,
        x_lo=xr.lower,
        x_hi=xr.upper,
        n_lo=None if nr is None else nr.lower,
        n_hi=None if nr is None else nr.upper,
    )
    if np.any(np.abs(truth[x_var] - x) > 0.5) or (
        n_var is not None and n is not None and np.any(np.abs(truth[n_var] - n) > 0.5)
    ):
        raise ValueError("the table's counts are not the space's counts at its placement")
    layers = [release] + [_earlier_layer(i + 1, e, truth) for i, e in enumerate(earlier)]

    # Cells of the release that an earlier release already published exactly cannot hide
    # anything; cells it hid with the same counts are hidden again (they will be needed).
    exact = np.zeros(space.nvars, dtype=bool)
    exact[zero_vars] = True
    hidden_before = np.zeros(space.nvars, dtype=bool)
    for layer in layers[1:]:
        shown = ~layer.hidden & ~layer.structural & (layer.coded == "")
        same = layer.x_shift == 0
        exact[layer.x_var[shown & (layer.x_lo == layer.x_hi) & same]] = True
        hidden_before[layer.x_var[layer.hidden & same]] = True
        if layer.n_var is not None and layer.n_lo is not None and layer.n_hi is not None:
            assert layer.n_shift is not None
            same_n = layer.n_shift == 0
            exact[layer.n_var[shown & (layer.n_lo == layer.n_hi) & same_n]] = True
    fixed_elsewhere = exact[x_var] if n_var is None else exact[x_var] & exact[n_var]
    again = hidden_before[x_var] if n_var is None else hidden_before[x_var] | hidden_before[n_var]
    release.hidden |= again & ~known_empty & ~fixed_elsewhere
    immovable = known_empty | fixed_elsewhere
    weight = 1.0 + (n if n is not None else x).astype(float)
    tiers = _tiers(_levels(table.shape), len(table.dimensions))

    requirements: list[Requirement] = []
    seen: set[tuple[Any, ...]] = set()
    for layer in layers:
        for req in _requirements(layer):
            # The same count published by several releases is one requirement (the release's
            # own are kept: they drive its hypercubes).
            key = (req.form, req.lower, req.upper)
            if layer.index > 0 and key in seen:
                continue
            seen.add(key)
            requirements.append(req)
    for var in [] if implied is None else np.asarray(implied, dtype=np.int64).tolist():
        q = int(truth[var])
        if q < k:
            requirements.append(
                Requirement(
                    -1,
                    int(var),
                    "implied",
                    ((int(var), 1.0),),
                    float(max(0, q - p)),
                    float(min(k - 1, q + p)),
                    "implied",
                )
            )
    if earlier:
        requirements = _affected(space, truth, zero_vars, layers, requirements)

    # 2. Hypercubes on the release's own table.
    needs = []
    for req in requirements:
        if req.table != 0:
            continue
        _, _, q = release.quantity(req.cell, req.quantity)
        needs.append(Need(req.cell, req.quantity, req.upper - q, q - req.lower))
    numerator_hidden = coded != ""
    known = np.zeros(space.nvars, dtype=bool)
    if earlier:
        facts_before = _facts(space.nvars, layers[1:], None, zero_vars)
        known = facts_before.ub - facts_before.lb <= 1e-9
    hc_table = Table(
        shape=table.shape,
        x=x,
        n=n,
        k=k,
        primary=primary,
        small=small,
        immovable=immovable,
        hidden=release.hidden,
        numerator_hidden=numerator_hidden,
        top=np.where(coded == TOP, top_code_percent if top_code_percent else np.nan, np.nan),
        bottom=np.where(
            coded == BOTTOM,
            bottom_code_percent if bottom_code_percent is not None else np.nan,
            np.nan,
        ),
        weight=weight,
        reserved=tiers[0],
        numerator_fixed=known[x_var],
        denominator_fixed=None if n_var is None else known[n_var],
        statuses=False,
    )
    lap("primary")
    release.hidden |= forced(hc_table, needs)
    moves = choose_moves(hc_table, needs)
    lap("secondary")

    # 3. Audit, with the hypercube moves as candidate witnesses (when the release's table is
    # the whole model; the model re-verifies every one of them).
    knowledge = _knowledge(space, layers, truth, zero_vars, bool(earlier))
    model = Model(knowledge)
    ledger = ReachedRanges(space.nvars, requirements)
    ledger.absorb(knowledge.truth[None, :])  # the true counts are a point of every model
    covered = x_var.size + (0 if n_var is None else n_var.size)
    if covered == space.nvars and moves:
        shifts = _displacements(moves, release, space.nvars)
        ledger.absorb_moves(knowledge.truth, shifts[knowledge.feasible_moves(shifts)])
    elif earlier:
        # Each table's own hypercube moves through the cells it hides, completed through the
        # space's rest cells and verified against the joint model: many sides of many
        # requirements are settled before any program runs.
        fixed = knowledge.ub - knowledge.lb <= 1e-9
        for layer in layers:
            found = moves if layer.index == 0 else _witness_moves(layer, fixed)
            if found:
                shifts = space.lift(_displacements(found, layer, space.nvars))
                ledger.absorb_moves(knowledge.truth, shifts[knowledge.feasible_moves(shifts)])
    programs = 0
    ledger.sweep(model, range(len(requirements)), groups=False)
    for hold in space.slices:
        # Slices of the polytope first (in a rate table: numerators alone, denominators at
        # their true values, then the other way round). Their programs are a fraction of the
        # size, and most points the audit needs move only one of the two.
        piece = Model(knowledge, hold=hold)
        ledger.sweep(piece, range(len(requirements)))
        programs += piece.solved
    lap("audit")

    # 4-5. Exact programs for the sides no witness settles; for the violated ones found (up to
    # _BATCH at a time), perturbation programs (see _Search), then the model of the new
    # pattern, whose witnesses are verified against it and whose sweep settles most of the
    # sides still open, since one new suppression usually protects many cells at once. The
    # sides no point has moved toward their goal are probed first: they are the likeliest to
    # be violated, and a suppression they need is best found before the sweep's groups.
    search = _Search(
        space,
        layers,
        truth,
        zero_vars,
        ~immovable,
        weight,
        tiers,
        numerator_hidden,
    )
    rounds = 0
    swept = False
    while True:
        probe = ledger.least_advanced(knowledge.truth)[:_PROBES]
        violated = ledger.violations(model, probe, _BATCH)
        if not violated and not swept:
            ledger.sweep(model, ledger.bad())
            swept = True
            continue
        if not violated:
            violated = ledger.violations(model, ledger.bad(), _BATCH)
        programs += model.solved
        model.solved = 0
        lap("audit")
        if not violated:
            break
        rounds += 1
        if rounds > 2 * len(x) + 10:  # pragma: no cover - every round suppresses a new cell
            raise ProtectionImpossible("Secondary suppression did not converge.")
        pending = search.round(ledger, violated)
        lap("secondary")
        knowledge = _knowledge(space, layers, truth, zero_vars, bool(earlier))
        fresh = Witnesses(space.nvars, pending)
        fresh.keep_feasible(knowledge)
        ledger.absorb(fresh.matrix())
        model = Model(knowledge)
        ledger.sweep(model, ledger.bad(), groups=False)
        swept = False
    programs += model.solved + search.programs
    perturbations = search.perturbations

    if exact_audit:
        # Independent of every witness: both programs of every requirement on the final model.
        limits = (ledger.lower, ledger.upper, ledger.limited)
        ledger = ReachedRanges(space.nvars, requirements)
        ledger.lower, ledger.upper, ledger.limited = limits
        ledger.settle(model, range(len(requirements)), exact=True)
        programs += model.solved
        lap("audit")
    checks = ledger.checks()
    witness_count = ledger.witnesses

    proof = Proof(
        checks=tuple(checks),
        programs=programs,
        witnesses=witness_count,
        hypercubes=len(moves),
        perturbations=perturbations,
        linked_tables=len(earlier),
        seconds=seconds,
        joint=bool(earlier) or covered != space.nvars,
    )
    if not proof.ok:  # pragma: no cover - only if the exact programs contradict a witness
        raise ProtectionImpossible("The audit of this release did not pass.")
    out = _publish(table, release, proof, unit, rounding, p, protection_level)
    lap("primary")
    return out


def _no_timer() -> float:
    return 0.0


def _tightened(before: Facts, after: Facts) -> np.ndarray:
    """Variables whose facts are stricter in ``after`` (a bound, or a row through them)."""
    out = (after.lb > before.lb + TOL) | (after.ub < before.ub - TOL)
    old = before.pairs()
    new = after.pairs()
    known = {
        (int(f), int(g), float(a), float(b)): (float(lo), float(hi))
        for f, g, a, b, lo, hi in zip(*old, strict=True)
    }
    for f, g, a, b, lo, hi in zip(*new, strict=True):
        was = known.get((int(f), int(g), float(a), float(b)))
        if was is None or lo > was[0] + TOL or hi < was[1] - TOL:
            out[int(f)] = out[int(g)] = True
    return out


def _affected(
    space: Space,
    truth: np.ndarray,
    zeros: np.ndarray,
    layers: Sequence[_Layer],
    requirements: Sequence[Requirement],
) -> list[Requirement]:
    """The requirements the release can affect: its own, and those of earlier releases whose
    quantities lie in a component of the earlier model (the programs' connected unknowns) that
    the release states something new about.

    Everything published before was proven together (each release was audited jointly with all
    before it), and the attacker's programs split by component: a component about which the
    release says nothing new has the same programs, so the same ranges, as before. An earlier
    release whose records have changed since (a shift) is audited whole: the shift is new
    knowledge about it."""
    before = _facts(space.nvars, layers[1:], None, zeros)
    after = _facts(space.nvars, layers, None, zeros)
    changed = _tightened(before, after)
    model = Model(Knowledge.build(space, before, truth))
    unknown = model.local >= 0
    touched = np.zeros(int(model.var_label.max()) + 1 if model.var_label.size else 0, dtype=bool)
    touched[model.var_label[model.local[changed & unknown]]] = True
    shifted = {
        layer.index
        for layer in layers[1:]
        if np.any(layer.x_shift != 0) or (layer.n_shift is not None and np.any(layer.n_shift != 0))
    }
    out = []
    for req in requirements:
        if req.table == 0 or req.table in shifted:
            out.append(req)
            continue
        for var, _ in req.form:
            j = model.local[var]
            if j >= 0 and touched[model.var_label[j]]:
                out.append(req)
                break
    return out


def _witness_moves(layer: _Layer, fixed: np.ndarray) -> list[Move]:
    """Hypercube moves of a layer's own table through cells it already hides, changing no count
    the joint model knows exactly (``fixed``, per variable): points of its own model at the
    ends of its requirements, candidates for witnesses of the joint model."""
    needs = []
    for quantity, mask in layer.small.items():
        for i in np.flatnonzero(mask):
            _, _, q = layer.quantity(int(i), quantity)
            needs.append(
                Need(int(i), quantity, min(layer.k - 1, q + layer.p) - q, q - max(0, q - layer.p))
            )
    if not needs or not layer.shape:
        return []
    weight = 1.0 + (layer.n if layer.n is not None else layer.x).astype(float)
    hidden = layer.hidden.copy()
    numerator_hidden = layer.coded != ""
    table = Table(
        shape=layer.shape,
        x=layer.x,
        n=layer.n,
        k=layer.k,
        primary=layer.primary,
        small=layer.small,
        immovable=layer.structural,
        hidden=hidden.copy(),
        numerator_hidden=numerator_hidden,
        top=np.where(layer.coded == TOP, layer.top if layer.top else np.nan, np.nan),
        bottom=np.where(
            layer.coded == BOTTOM, layer.bottom if layer.bottom is not None else np.nan, np.nan
        ),
        weight=weight,
        numerator_fixed=fixed[layer.x_var] & hidden,
        denominator_fixed=None if layer.n_var is None else fixed[layer.n_var] & hidden,
        statuses=False,
    )
    moves = choose_moves(table, needs)
    free = hidden | numerator_hidden
    return [m for m in moves if np.all((hidden if m.vector[1] != 0.0 else free)[m.corners])]


def _displacements(moves: Sequence[Move], release: _Layer, nvars: int) -> sp.csr_matrix:
    """The hypercube moves as sparse displacements of the model's variables (one row each)."""
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for j, move in enumerate(moves):
        step = move.signs * move.delta
        for variables, share in ((release.x_var, move.vector[0]), (release.n_var, move.vector[1])):
            if share != 0.0 and variables is not None:
                rows.append(np.full(move.corners.size, j))
                cols.append(variables[move.corners])
                vals.append(step * share)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(moves), nvars),
    )


def _knowledge(
    space: Space, layers: Sequence[_Layer], truth: np.ndarray, zeros: np.ndarray, linked: bool
) -> Knowledge:
    try:
        return Knowledge.build(space, _facts(space.nvars, layers, None, zeros), truth)
    except ModelInconsistent as exc:
        if linked:
            raise LinkedReleaseMismatch(
                "An earlier release's published values do not match this data."
            ) from exc
        raise  # pragma: no cover - a single release is always consistent with its own data


def _publish(
    table: Cube,
    release: _Layer,
    proof: Proof,
    unit: str,
    rounding: str,
    p: int,
    protection_level: int | None,
) -> Protection:
    shape = table.shape
    size = release.x.size
    scale = UNIT_SCALE[unit]
    status = np.full(size, FREE, dtype=object)
    num_out = np.full(size, None, dtype=object)
    den_out = np.full(size, None, dtype=object) if release.n is not None else None
    value = np.full(size, None, dtype=object)
    lower = np.full(size, None, dtype=object)
    upper = np.full(size, None, dtype=object)
    xr = rnd.round_counts(release.x, rounding)
    nr = rnd.round_counts(release.n, rounding) if release.n is not None else None

    def count(v: float) -> int | float:
        return int(v) if float(v).is_integer() else float(v)

    for i in range(size):
        if release.structural[i]:
            status[i] = STRUCTURAL
            num_out[i] = 0
            if den_out is not None:
                den_out[i] = 0
            else:
                value[i] = 0.0
            continue
        if release.hidden[i]:
            status[i] = PRIMARY if release.primary[i] else SECONDARY
            continue
        if release.coded[i] != "":
            assert den_out is not None and nr is not None
            status[i] = ROUNDED
            den_out[i] = count(nr.published[i])
            if release.coded[i] == TOP:
                assert release.top is not None
                lower[i], upper[i] = round(scale * release.top / 100.0, 1), scale
            else:
                assert release.bottom is not None
                lower[i], upper[i] = 0.0, round(scale * release.bottom / 100.0, 1)
            continue
        if rounding != RoundingScheme.NONE.value:
            status[i] = ROUNDED
        num_out[i] = count(xr.published[i])
        if release.n is None:
            value[i] = float(xr.published[i])
            if rounding != RoundingScheme.NONE.value:
                lower[i], upper[i] = float(xr.lower[i]), float(xr.upper[i])
            continue
        assert den_out is not None and nr is not None
        den_out[i] = count(nr.published[i])
        value[i] = rnd.ratio(float(xr.published[i]), float(nr.published[i]), scale)
        if rounding != RoundingScheme.NONE.value:
            lower[i], upper[i] = rnd.ratio_bounds(
                float(xr.lower[i]),
                float(xr.upper[i]),
                float(nr.lower[i]),
                float(nr.upper[i]),
                scale,
            )
    return Protection(
        table=table,
        k=release.k,
        status=status.reshape(shape),
        numerator=num_out.reshape(shape),
        denominator=None if den_out is None else den_out.reshape(shape),
        value=value.reshape(shape),
        lower=lower.reshape(shape),
        upper=upper.reshape(shape),
        rounding=rounding,
        top_code_percent=release.top,
        bottom_code_percent=release.bottom,
        protection_level=protection_level,
        proof=proof,
        coded=release.coded.reshape(shape),
    )
