"""Statistical disclosure control of a release: primary and secondary suppression, rounding and
coding, proven safe by an audit of the attacker's linear programs, across linked releases.

``protect(cube, k, ...)`` decides the status and the published form of every cell of a table
(all its margins included) and returns them with the audit that proves them safe.

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
cells are not sensitive and carry no interval, as in tau-ARGUS and sdcTable.

When even suppressing the whole release cannot meet an interval, because the statuses (every
secondary cell is at least k) or earlier releases already reveal more, the requirement becomes
exactly what the fully suppressed release leaves the attacker: this release may not narrow it
any further. Such checks are marked ``limited`` in the audit, with the interval they stand for.

Method: iterative, and safe by construction at each step.

1. Primary suppression (:mod:`aggregation.suppression`); coding of the remaining rates.
2. One hypercube per sensitive quantity (:mod:`aggregation.hypercube`, after GHMITER): a cheap,
   vectorized first pattern whose moves double as witnesses for the audit. No hypercube may
   suppress a headline margin (see *Margins* below).
3. The audit (:mod:`aggregation.attacker`): min and max linear programs (SciPy/HiGHS) of every
   requirement not already settled by a verified witness, over the joint model of this release
   and every earlier release of the same data. Most sides are settled in bulk first, by programs
   that push many quantities to their goals at once (``Ledger.sweep``), on slices of the
   polytope (numerators alone, then denominators alone) and then on the whole of it.
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
solver's numerics. On the demo's sparse 3-dimensional releases (6 x 41 x 8 cells with margins,
about 1,000 of them primary) it publishes every period total and the grand total, which a cost
of "1 + population" alone did not: the first hypercube through the totals made them free for all
later ones.

An optimal MILP (one binary per cell and one flow per requirement, as tau-ARGUS's "optimal")
was rejected: for a 1,700-cell table with hundreds of sensitive cells it has millions of
variables. The heuristic may suppress more than the optimum; it never suppresses less than
safety needs, and the audit, not the heuristic, is what proves it.

Rounding (``base5`` / ``midpoint6``, :mod:`aggregation.rounding`) applies to published cells
after suppression; the audit treats each rounded count as its interval, so a rounded table is
audited for what it really reveals (rounding only ever widens the attacker's intervals).

Linked releases: a release of an indicator with other dimensions than an earlier release of the
same data shares margins with it (neighborhood x year and race x year share the year totals).
Pass the earlier releases as ``previous`` and the cube over the union of all their dimensions
(``linked_dimensions``); the model is then the joint cube, whose cells no release publishes are
unknowns too, and every requirement of every release must hold in it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from aggregation import rounding as rnd
from aggregation.attacker import (
    TOL,
    Check,
    Facts,
    Geometry,
    Knowledge,
    Ledger,
    Model,
    ModelInconsistent,
    Requirement,
    Witnesses,
)
from aggregation.cube import TOTAL, Cube
from aggregation.hypercube import Move, Need, Table, forced
from aggregation.hypercube import protect as hypercube_protect
from aggregation.lp import OPTIMAL, Program
from aggregation.suppression import (
    COMPLEMENT,
    DENOMINATOR,
    EMPTY,
    FREE,
    NUMERATOR,
    PRIMARY,
    ROUNDED,
    SECONDARY,
    check_k,
    sensitive,
)
from core.errors import Conflict

_PROBES = 8  # sides probed with single programs before a sweep's groups (see protect)
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
    """What an earlier release published: the attacker's view of it.

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
    rounding: str = rnd.NONE
    coded: np.ndarray | None = None
    top_code_percent: float | None = None
    bottom_code_percent: float | None = None
    protection_level: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) + 1 for c in self.categories)

    @classmethod
    def from_cells(
        cls,
        dimensions: Sequence[str],
        categories: Sequence[Sequence[str]],
        cells: Sequence[Mapping[str, Any]],
        *,
        k: int,
        rate: bool,
        rounding: str = rnd.NONE,
        top_code_percent: float | None = None,
        bottom_code_percent: float | None = None,
        protection_level: int | None = None,
    ) -> PublishedTable:
        """Rebuild a published table from its stored release cells (the shared cell shape)."""
        dims = tuple(dimensions)
        cats = tuple(tuple(c) for c in categories)
        shape = tuple(len(c) + 1 for c in cats)
        status = np.full(shape, "", dtype=object)
        num = np.full(shape, np.nan)
        den = np.full(shape, np.nan) if rate else None
        coded = np.full(shape, "", dtype=object)
        lookup = [{v: i for i, v in enumerate(c)} | {TOTAL: len(c)} for c in cats]
        for cell in cells:
            try:
                index = tuple(lookup[i][str(cell[d])] for i, d in enumerate(dims))
            except KeyError as exc:
                raise LinkedReleaseMismatch(
                    "An earlier release has a category this indicator does not declare."
                ) from exc
            status[index] = cell["status"]
            if cell.get("numerator") is not None:
                num[index] = float(cell["numerator"])
            if den is not None and cell.get("denominator") is not None:
                den[index] = float(cell["denominator"])
            if (
                rate
                and cell["status"] == ROUNDED
                and cell.get("numerator") is None
                and cell.get("denominator") is not None
            ):
                lower = cell.get("lower")
                coded[index] = TOP if lower is not None and float(lower) > 0 else BOTTOM
        if np.any(status == ""):
            raise LinkedReleaseMismatch("An earlier release does not have every cell of its table.")
        return cls(
            dimensions=dims,
            categories=cats,
            status=status,
            numerator=num,
            denominator=den,
            k=check_k(k),
            rounding=rnd.check_scheme(rounding),
            coded=coded,
            top_code_percent=top_code_percent,
            bottom_code_percent=bottom_code_percent,
            protection_level=protection_level,
        )


@dataclass(frozen=True)
class Audit:
    """The proof: one check per requirement of every release in the model."""

    checks: tuple[Check, ...]
    programs: int  # linear programs solved (audit and perturbation)
    witnesses: int  # verified witness points used
    hypercubes: int  # hypercube moves of the first pass
    perturbations: int  # perturbation programs that added suppressions
    linked_tables: int
    seconds: Mapping[str, float] = field(default_factory=dict)  # primary, secondary, audit

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

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
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


@dataclass(frozen=True)
class Protection:
    """The protected release: status and published form of every cell, and the audit.

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
    audit: Audit
    coded: np.ndarray = field(repr=False)

    def cells(self) -> list[dict[str, Any]]:
        """The release cells in the shared shape, in the order of ``Cube.coordinates``."""
        out: list[dict[str, Any]] = []
        for index in self.table.coordinates():
            cell: dict[str, Any] = dict(
                zip(self.table.dimensions, self.table.labels(index), strict=True)
            )
            cell.update(
                {
                    "numerator": self.numerator[index],
                    "denominator": None if self.denominator is None else self.denominator[index],
                    "value": self.value[index],
                    "status": str(self.status[index]),
                    "lower": self.lower[index],
                    "upper": self.upper[index],
                }
            )
            out.append(cell)
        return out

    def published(self) -> PublishedTable:
        """This release as an earlier release for the next one (``previous=``)."""

        def numbers(a: np.ndarray) -> np.ndarray:
            return np.array([np.nan if v is None else float(v) for v in a.ravel()]).reshape(a.shape)

        return PublishedTable(
            dimensions=self.table.dimensions,
            categories=self.table.categories,
            status=self.status.copy(),
            numerator=numbers(self.numerator),
            denominator=None if self.denominator is None else numbers(self.denominator),
            k=self.k,
            rounding=self.rounding,
            coded=self.coded.copy(),
            top_code_percent=self.top_code_percent,
            bottom_code_percent=self.bottom_code_percent,
            protection_level=self.protection_level,
        )

    def parameters(self) -> dict[str, Any]:
        """What the release must store to be rebuilt as a :class:`PublishedTable` later."""
        return {
            "min_cell_size": self.k,
            "rounding": self.rounding,
            "top_code_percent": self.top_code_percent,
            "bottom_code_percent": self.bottom_code_percent,
            "protection_level": self.protection_level,
        }


def linked_dimensions(
    dimensions: Sequence[str], previous: Sequence[PublishedTable]
) -> tuple[str, ...]:
    """The dimensions of the cube ``protect`` needs: the release's, then any other dimension of
    an earlier release, in first-seen order."""
    out = list(dimensions)
    for table in previous:
        for d in table.dimensions:
            if d not in out:
                out.append(d)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Internals


@dataclass
class _Layer:
    """One table (release) of the model: its cells on the joint cube and its status so far."""

    index: int
    embed: np.ndarray  # joint flat index of each table cell (table shape, flattened)
    x: np.ndarray  # true numerator of each table cell (flat)
    n: np.ndarray | None
    k: int
    p: int
    small: dict[str, np.ndarray]
    primary: np.ndarray
    empty: np.ndarray
    hidden: np.ndarray
    coded: np.ndarray  # object: "", "top", "bottom"
    top: float | None
    bottom: float | None
    # Published intervals of the true counts (NaN where withheld).
    x_lo: np.ndarray
    x_hi: np.ndarray
    n_lo: np.ndarray | None
    n_hi: np.ndarray | None


def _embedding(joint: Cube, dims: Sequence[str], categories: Sequence[Sequence[str]]) -> np.ndarray:
    """Joint flat index of every cell of a table over ``dims`` (flattened, C order)."""
    for d, cats in zip(dims, categories, strict=True):
        if d not in joint.dimensions:
            raise LinkedReleaseMismatch("An earlier release has a dimension the cube lacks.")
        if tuple(cats) != joint.categories[joint.dimensions.index(d)]:
            raise LinkedReleaseMismatch(
                "An earlier release declares other categories for a dimension."
            )
    shape = tuple(len(c) + 1 for c in categories)
    joint_shape = joint.shape
    strides = [int(np.prod(joint_shape[i + 1 :], dtype=np.int64)) for i in range(len(joint_shape))]
    flat = np.zeros(shape, dtype=np.int64)
    for axis, size in enumerate(joint_shape):
        name = joint.dimensions[axis]
        if name in dims:
            pos = list(dims).index(name)
            view = [1] * len(shape)
            view[pos] = shape[pos]
            flat = flat + strides[axis] * np.arange(size).reshape(view)
        else:
            flat = flat + strides[axis] * (size - 1)
    return flat.ravel()


def _requirements(layer: _Layer) -> list[Requirement]:
    out: list[Requirement] = []
    k, p = layer.k, layer.p
    for quantity, mask in layer.small.items():
        for i in np.flatnonzero(mask):
            q = _quantity(layer, int(i), quantity)
            out.append(
                Requirement(
                    layer.index,
                    int(layer.embed[i]),
                    quantity,
                    float(max(0, q - p)),
                    float(min(k - 1, q + p)),
                    "primary",
                )
            )
    if layer.n is not None:
        for i in np.flatnonzero(layer.coded != ""):
            n = int(layer.n[i])
            if layer.coded[i] == TOP:
                assert layer.top is not None
                top = math.floor(n * (100.0 - layer.top) / 100.0 + 1e-9)
                out.append(
                    Requirement(layer.index, int(layer.embed[i]), COMPLEMENT, k, top, "top_coded")
                )
            else:
                assert layer.bottom is not None
                bottom = math.floor(n * layer.bottom / 100.0 + 1e-9)
                out.append(
                    Requirement(
                        layer.index, int(layer.embed[i]), NUMERATOR, k, bottom, "bottom_coded"
                    )
                )
    return out


def _quantity(layer: _Layer, i: int, quantity: str) -> int:
    if quantity == NUMERATOR:
        return int(layer.x[i])
    assert layer.n is not None
    if quantity == DENOMINATOR:
        return int(layer.n[i])
    return int(layer.n[i] - layer.x[i])


def _facts(geometry: Geometry, layers: Sequence[_Layer], relax: np.ndarray | None) -> Facts:
    """What the attacker knows when each layer shows its pattern.

    ``relax`` (for the perturbation programs) marks cells of layer 0 whose published numbers
    are treated as unknown; they keep what their status says (at least k, inside their code),
    so a point of the relaxed model whose relaxed cells did not move is a point of the real one.
    """
    facts = Facts(geometry)
    for layer in layers:
        hidden = layer.hidden
        e = layer.embed
        facts.empty(e[layer.empty])
        shown = ~hidden & ~layer.empty
        live = ~layer.empty
        facts.not_small(e[live & ~layer.primary], layer.k)
        for quantity, mask in layer.small.items():
            facts.small(e[mask], quantity, layer.k)
        numbers = shown if relax is None or layer.index != 0 else shown & ~relax
        whole = numbers & (layer.coded == "")
        facts.numerator_within(e[whole], layer.x_lo[whole], layer.x_hi[whole])
        if layer.n_lo is not None and layer.n_hi is not None:
            facts.denominator_within(e[numbers], layer.n_lo[numbers], layer.n_hi[numbers])
            for side, percent in ((TOP, layer.top), (BOTTOM, layer.bottom)):
                cells = shown & (layer.coded == side)
                if np.any(cells):
                    assert percent is not None
                    if side == TOP:
                        facts.coded_top(e[cells], percent)
                    else:
                        facts.coded_bottom(e[cells], percent)
    return facts


def _published_intervals(
    counts: np.ndarray, scheme: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = rnd.round_counts(counts, scheme)
    return r.published, r.lower, r.upper


def _previous_layer(index: int, table: PublishedTable, joint: Cube, rate: bool) -> _Layer:
    if (table.denominator is not None) != rate:
        raise LinkedReleaseMismatch("An earlier release is not of the same kind of table.")
    embed = _embedding(joint, table.dimensions, table.categories)
    x = joint.numerator.ravel()[embed]
    n = joint.denominator.ravel()[embed] if joint.denominator is not None else None
    status = table.status.ravel()
    small = sensitive(x, n, table.k)
    primary = status == PRIMARY
    empty = status == EMPTY
    # The statuses must be those of this data: primary exactly where a quantity is under k.
    computed = np.zeros(x.shape, dtype=bool)
    for mask in small.values():
        computed |= mask
    if np.any(computed != primary) or (n is not None and np.any((n == 0) != empty)):
        raise LinkedReleaseMismatch("An earlier release was computed from other data.")
    small = {q: m & primary for q, m in small.items()}
    hidden = primary | (status == SECONDARY)
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
    withheld = ~hidden & ~empty & (coded == "") & ~shown
    if np.any(withheld):
        raise LinkedReleaseMismatch("An earlier release withholds a cell it marks as published.")
    return _Layer(
        index=index,
        embed=embed,
        x=x,
        n=n,
        k=table.k,
        p=table.k - 1 if table.protection_level is None else table.protection_level,
        small=small,
        primary=primary,
        empty=empty,
        hidden=hidden,
        coded=coded,
        top=table.top_code_percent,
        bottom=table.bottom_code_percent,
        x_lo=x_lo,
        x_hi=x_hi,
        n_lo=n_lo,
        n_hi=n_hi,
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
        geometry: Geometry,
        layers: Sequence[_Layer],
        truth: tuple[np.ndarray, np.ndarray | None],
        relax: np.ndarray,
        weight: np.ndarray,
    ) -> None:
        self.geometry = geometry
        self.release = layers[0]
        self.relax = relax
        self.weight = weight
        self.model = Model(Knowledge.build(_facts(geometry, layers, relax), truth[0], truth[1]))
        self.truth = self.model.knowledge.truth
        cell_of = np.full(geometry.nvars, -1, dtype=np.int64)
        cells = self.release.embed[relax]
        cell_of[cells] = np.flatnonzero(relax)
        if geometry.rate:
            cell_of[geometry.size + cells] = np.flatnonzero(relax)
        self.cell_of = cell_of
        self.is_numerator = np.arange(geometry.nvars) < geometry.size
        self._programs: dict[
            int, tuple[Program, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
        ] = {}

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
        program.set_col_bounds(
            cols,
            np.array([max(old[0][0], gap), 0.0]),
            np.array([max(old[1][0], gap), 0.0]),
        )
        solution = program.solve()
        program.set_col_bounds(cols, *old)
        return solution

    def run(
        self, requirement: Requirement, maximize: bool, numerator_hidden: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Cells of the release to suppress and the witness, or None if no move reaches it."""
        model = self.model
        form = self.geometry.var(requirement.cell, requirement.quantity)
        const, rest = model.constant_part(form)
        if not rest:
            return None
        labels = {model.component_of(v) for v in rest}
        if len(labels) != 1:  # pragma: no cover - x and n of a cell share their n - x row
            return None
        program, var_ids, dev, keep, shift = self._program(labels.pop())
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
            assert requirement.quantity == COMPLEMENT
            knowledge_row = model.knowledge.complement_start + requirement.cell
            row = np.array([model.row_position[knowledge_row]])
            old = (program.row_lb[row].copy(), program.row_ub[row].copy())
            bound = goal - model.row_shift[row] - shift[row]
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
        geometry: Geometry,
        layers: Sequence[_Layer],
        truth: tuple[np.ndarray, np.ndarray | None],
        movable: np.ndarray,
        weight: np.ndarray,
        tiers: Sequence[np.ndarray],
        numerator_hidden: np.ndarray,
    ) -> None:
        self.geometry = geometry
        self.layers = layers
        self.release = layers[0]
        self.truth = truth
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
                _Perturber(self.geometry, self.layers, self.truth, relax, self.weight),
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

    def round(self, ledger: Ledger, bad: Sequence[int]) -> list[np.ndarray]:
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

    def _side(self, ledger: Ledger, i: int, maximize: bool) -> np.ndarray | None:
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
            form = self.geometry.var(requirement.cell, requirement.quantity)
            best = everything.model.optimize(form, maximize)
            self.programs += 1
            if best.status in ("optimal", "unbounded"):
                self._limited.add((i, maximize))
                ledger.limit(i, maximize, best.value)
                if not np.any(candidates):
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


def protect(
    cube: Cube,
    k: int,
    *,
    dimensions: Sequence[str] | None = None,
    unit: str | None = None,
    rounding: str = rnd.NONE,
    top_code_percent: float | None = None,
    bottom_code_percent: float | None = None,
    protection_level: int | None = None,
    previous: Sequence[PublishedTable] = (),
    exact_audit: bool = False,
) -> Protection:
    """Protect the table of ``dimensions`` (default: all of the cube's) under threshold ``k``.

    ``cube`` must cover the release's dimensions and every dimension of ``previous`` (see
    :func:`linked_dimensions`) and be computed from the same data as the earlier releases.
    ``unit`` ("count", "percent", "rate_per_1000"; default "count" for a count table and
    "percent" for a rate) only shapes the published values. ``protection_level`` is p above
    (default k - 1). ``exact_audit`` solves every audit program instead of accepting verified
    witnesses (slower; the result is the same, the report has exact intervals).

    Raises :class:`LinkedReleaseMismatch` when an earlier release is not of this data, and
    :class:`ProtectionImpossible` when earlier releases already disclose a cell so that no
    suppression of this release can protect it.
    """
    clock = time.perf_counter()
    seconds = {"primary": 0.0, "secondary": 0.0, "audit": 0.0}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] += now - clock
        clock = now

    k = check_k(k)
    rnd.check_scheme(rounding)
    p = k - 1 if protection_level is None else int(protection_level)
    if p < 0:
        raise ValueError("the protection level is never negative")
    dims = tuple(cube.dimensions if dimensions is None else dimensions)
    rate = cube.denominator is not None
    unit = unit or ("percent" if rate else "count")
    if unit not in rnd.UNIT_SCALE or (unit == "count") == rate:
        raise ValueError(
            "unit must be count for a count table, percent or rate_per_1000 for a rate"
        )
    if (top_code_percent is not None or bottom_code_percent is not None) and not rate:
        top_code_percent = bottom_code_percent = None  # coding applies to rates only
    needed = linked_dimensions(dims, previous)
    if set(needed) != set(cube.dimensions):
        raise ValueError(
            "the cube must have exactly the release's and the earlier releases' dimensions"
        )
    table = cube.project(dims) if dims != cube.dimensions else cube
    geometry = Geometry(cube.shape, rate)
    truth = (
        cube.numerator.ravel().astype(float),
        None if cube.denominator is None else cube.denominator.ravel().astype(float),
    )

    # Layer 0: the release.
    x = table.numerator.ravel()
    n = table.denominator.ravel() if table.denominator is not None else None
    small = sensitive(x, n, k)
    primary = np.zeros(x.shape, dtype=bool)
    for mask in small.values():
        primary |= mask
    empty = (n == 0) if n is not None else np.zeros(x.shape, dtype=bool)
    coded = np.full(x.shape, "", dtype=object)
    if n is not None:
        top_mask, bottom_mask = rnd.coded(x, n, top_code_percent, bottom_code_percent)
        coded[top_mask & ~primary & ~empty] = TOP
        coded[bottom_mask & ~primary & ~empty & (coded == "")] = BOTTOM
    xr = rnd.round_counts(x, rounding)
    nr = rnd.round_counts(n, rounding) if n is not None else None
    release = _Layer(
        index=0,
        embed=_embedding(cube, dims, table.categories),
        x=x,
        n=n,
        k=k,
        p=p,
        small=small,
        primary=primary,
        empty=empty,
        hidden=primary.copy(),
        coded=coded,
        top=top_code_percent,
        bottom=bottom_code_percent,
        x_lo=xr.lower,
        x_hi=xr.upper,
        n_lo=None if nr is None else nr.lower,
        n_hi=None if nr is None else nr.upper,
    )
    try:
        layers = [release] + [_previous_layer(i + 1, t, cube, rate) for i, t in enumerate(previous)]
    except ModelInconsistent as exc:  # pragma: no cover - raised as LinkedReleaseMismatch below
        raise LinkedReleaseMismatch(str(exc)) from exc

    # Cells of the release already published exactly by an earlier release cannot hide anything.
    fixed_elsewhere = np.zeros(geometry.size, dtype=bool)
    for layer in layers[1:]:
        shown = ~layer.hidden & ~layer.empty & (layer.coded == "")
        exact = shown & (layer.x_lo == layer.x_hi)
        if layer.n_lo is not None and layer.n_hi is not None:
            exact &= layer.n_lo == layer.n_hi
        fixed_elsewhere[layer.embed[exact]] = True
    immovable = empty | fixed_elsewhere[release.embed]
    weight = 1.0 + (n if n is not None else x).astype(float)
    tiers = _tiers(_levels(table.shape), len(dims))

    requirements: list[Requirement] = []
    for layer in layers:
        requirements.extend(_requirements(layer))

    # 2. Hypercubes on the release's own table.
    local_of = {int(j): i for i, j in enumerate(release.embed)}
    needs = []
    for req in requirements:
        if req.table != 0:
            continue
        i = local_of[req.cell]
        q = _quantity(release, i, req.quantity)
        needs.append(Need(i, req.quantity, req.upper - q, q - req.lower))
    numerator_hidden = coded != ""
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
    )
    lap("primary")
    release.hidden |= forced(hc_table, needs)
    moves = hypercube_protect(hc_table, needs)
    lap("secondary")

    # 3. Audit, with the hypercube moves as candidate witnesses (when the release's table is
    # the whole model; the model re-verifies every one of them).
    knowledge = _knowledge(geometry, layers, truth, previous)
    model = Model(knowledge)
    ledger = Ledger(geometry, requirements)
    if release.embed.size == geometry.size and moves:
        shifts = _displacements(moves, release.embed, geometry)
        ledger.absorb_moves(knowledge.truth, shifts[knowledge.feasible_moves(shifts)])
    programs = 0
    ledger.sweep(model, range(len(requirements)), groups=False)
    if rate:
        # Slices of the polytope first: numerators alone (denominators at their true values),
        # then denominators alone. Their programs are a fraction of the size, and most points
        # the audit needs move only one of the two.
        numerators = np.arange(geometry.nvars) < geometry.size
        for hold in (~numerators, numerators):
            piece = Model(knowledge, hold=hold)
            ledger.sweep(piece, range(len(requirements)))
            programs += piece.solved
    lap("audit")

    # 4-5. Exact programs for the sides no witness settles; at the first one found violated,
    # perturbation programs for that requirement (see _Search), then the model of the new
    # pattern, whose witnesses are verified against it and whose sweep settles most of the
    # sides still open, since one new suppression usually protects many cells at once. The
    # sides no point has moved toward their goal are probed first: they are the likeliest to
    # be violated, and a suppression they need is best found before the sweep's groups.
    search = _Search(geometry, layers, truth, ~immovable & ~empty, weight, tiers, numerator_hidden)
    rounds = 0
    swept = False
    while True:
        probe = ledger.least_advanced(knowledge.truth)[:_PROBES]
        violated = ledger.settle(model, probe, stop=True)
        if violated is None and not swept:
            ledger.sweep(model, ledger.bad())
            swept = True
            continue
        if violated is None:
            violated = ledger.settle(model, ledger.bad(), stop=True)
        programs += model.solved
        model.solved = 0
        lap("audit")
        if violated is None:
            break
        rounds += 1
        if rounds > 2 * len(x) + 10:  # pragma: no cover - every round suppresses a new cell
            raise ProtectionImpossible("Secondary suppression did not converge.")
        pending = search.round(ledger, [violated])
        lap("secondary")
        knowledge = _knowledge(geometry, layers, truth, previous)
        fresh = Witnesses(geometry.nvars, pending)
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
        ledger = Ledger(geometry, requirements)
        ledger.lower, ledger.upper, ledger.limited = limits
        ledger.settle(model, range(len(requirements)), exact=True)
        programs += model.solved
        lap("audit")
    checks = ledger.checks()
    witness_count = ledger.witnesses

    audit = Audit(
        checks=tuple(checks),
        programs=programs,
        witnesses=witness_count,
        hypercubes=len(moves),
        perturbations=perturbations,
        linked_tables=len(previous),
        seconds=seconds,
    )
    if not audit.ok:  # pragma: no cover - only if the exact programs contradict a witness
        raise ProtectionImpossible("The audit of this release did not pass.")
    out = _publish(table, release, audit, unit, rounding, p, protection_level)
    lap("primary")
    return out


def _displacements(moves: Sequence[Move], embed: np.ndarray, geometry: Geometry) -> sp.csr_matrix:
    """The hypercube moves as sparse displacements of the model's variables (one row each)."""
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for j, move in enumerate(moves):
        step = move.signs * move.delta
        cells = embed[move.corners]
        for offset, share in ((0, move.vector[0]), (geometry.size, move.vector[1])):
            if share != 0.0 and (offset == 0 or geometry.rate):
                rows.append(np.full(cells.size, j))
                cols.append(offset + cells)
                vals.append(step * share)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(moves), geometry.nvars),
    )


def _knowledge(
    geometry: Geometry,
    layers: Sequence[_Layer],
    truth: tuple[np.ndarray, np.ndarray | None],
    previous: Sequence[PublishedTable],
) -> Knowledge:
    try:
        return Knowledge.build(_facts(geometry, layers, None), truth[0], truth[1])
    except ModelInconsistent as exc:
        if previous:
            raise LinkedReleaseMismatch(
                "An earlier release's published values do not match this data."
            ) from exc
        raise  # pragma: no cover - a single release is always consistent with its own data


def _publish(
    table: Cube,
    release: _Layer,
    audit: Audit,
    unit: str,
    rounding: str,
    p: int,
    protection_level: int | None,
) -> Protection:
    shape = table.shape
    size = release.x.size
    scale = rnd.UNIT_SCALE[unit]
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
        if release.empty[i]:
            status[i] = EMPTY
            num_out[i] = 0
            if den_out is not None:
                den_out[i] = 0
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
        if rounding != rnd.NONE:
            status[i] = ROUNDED
        num_out[i] = count(xr.published[i])
        if release.n is None:
            value[i] = float(xr.published[i])
            if rounding != rnd.NONE:
                lower[i], upper[i] = float(xr.lower[i]), float(xr.upper[i])
            continue
        assert den_out is not None and nr is not None
        den_out[i] = count(nr.published[i])
        value[i] = rnd.ratio(float(xr.published[i]), float(nr.published[i]), scale)
        if rounding != rnd.NONE:
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
        audit=audit,
        coded=release.coded.reshape(shape),
    )
