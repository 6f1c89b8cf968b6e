"""Differentially private tables with OpenDP's measurements.

Two steps, so that the budget ledger can charge a release before anything is computed:

* :func:`plan` is pure (no data, no database, no clock): from the dimensions, their public
  categories, the unit, ``epsilon_per_release`` and ``max_contributions`` it builds the OpenDP
  measurement of the person-level query (OpenDP's polars plan: truncate each person to
  ``max_contributions`` rows, count per cell with the public keys) and states the exact privacy
  loss it spends (``DpPlan.epsilon``, what OpenDP's privacy map reports for one person; ``delta``
  is always 0). It also builds the mechanism that draws the noise: OpenDP's discrete Laplace over
  the vector of finest counts at the same scale, whose L1 sensitivity is the one OpenDP derives
  for the query (``max_contributions``); the plan refuses to exist if the two disagree, and
  ``epsilon`` is the larger of the two losses. The same inputs give the same plan.
* :func:`release` computes that query's exact counts on the frame it is given
  (:func:`_exact_counts`: the same person-local reduction and truncation, with a sort of one
  64-bit key a row instead of OpenDP's polars plan, which held about 110 bytes a row: three
  gigabytes for 20 million records), runs the noise once through an OpenDP ``Context`` whose
  privacy unit is that L1 sensitivity and whose budget is exactly ``plan.epsilon``, and
  post-processes the noisy counts into published cells. It never retries and never draws fresh
  noise twice: any failure raises a :class:`DpFailed` (or :class:`DpInvalid` before noise) and
  nothing is released.

Privacy semantics
    Privacy unit: one person, i.e. every record carrying one linkage token. Pure differential
    privacy (epsilon, delta = 0) with discrete Laplace noise, because the agreements budget in
    epsilon: pure-DP losses add up exactly on the ledger, with no delta to invent; and for one
    counting query with up to about 20 cells per person, Laplace noise is smaller than Gaussian
    noise converted to the same epsilon (at delta = 1e-9).
    Each person contributes at most ``max_contributions`` cells (truncated to that many rows per
    identifier, after the person's records are reduced to one row per cell), so the
    L1 sensitivity of the table is ``max_contributions`` and the noise scale is
    ``max_contributions / epsilon``. Group keys are the cross product of the public categories
    declared in the agreement (``with_keys``); a category absent from the data still gets a noisy
    count, a value outside the categories is dropped before counting and never appears.

What is counted
    As in the suppression path, a cell counts distinct people. For a rate, the noisy counts are
    "people in the numerator" and "people in the denominator but not the numerator" per cell (one
    query grouped by the dimensions and that flag): a person sits in exactly one of the two, so
    both are measured at the same noise scale, the denominator is their sum (so numerator <=
    denominator by construction) and the rate lies in [0, 1].

Margins
    Only the finest cells are measured, with the whole budget; every margin is the sum of the
    noisy finest cells below it (post-processing, no extra privacy loss). Measuring every grouping
    separately instead would split the budget over 2^d queries and multiply the noise scale of
    every cell, including the small finest cells where it matters most, by 2^d; margins are large
    counts whose relative error stays small even as sums (``bench/bench_dp.py --strategies``
    measures both on a realistic table). With ``max_contributions`` > 1, a person present in
    several cells below a margin counts once per cell there.

Intervals and reliability
    Each cell carries a 95% interval for its published value: for counts the exact interval of the
    sum of m discrete Laplace draws (:mod:`disclosure.dp_accuracy`; m = 1 is OpenDP's accuracy);
    for rates, 97.5% intervals for the numerator and the complement combined by monotonicity
    (Bonferroni), so the rate interval covers with probability at least 95%. Intervals describe
    the privacy noise only (the records are a census, not a sample). A cell is "low_reliability"
    when the half-width of its count's interval exceeds ``max_relative_half_width`` (50%) of the
    published count; for a rate, when that holds for its denominator, or when the rate's interval
    is wider than ``max_rate_interval_width`` (30 percentage points, after the NCHS data
    presentation standards for proportions), or when the noisy denominator is zero.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Literal

import numpy as np
import opendp.prelude as dp
import polars as pl
from opendp.extras.polars import dp_len

from core.errors import DomainError, InvalidInput
from disclosure.cube import TOTAL, Cube, label_positions
from disclosure.dp_accuracy import half_width
from disclosure.vocabulary import UNIT_SCALE, CellStatus, Unit

dp.enable_features("contrib")

DP, LOW_RELIABILITY = CellStatus.DP.value, CellStatus.LOW_RELIABILITY.value
MECHANISM = "discrete_laplace"
CONFIDENCE = 0.95

# Internal column names: field names start with a letter, so these never clash with a dimension.
_PERSON = "__bb_person"
_FLAG = "__bb_in_numerator"
_COUNT = "__bb_count"
_OPENDP_VERSION = version("opendp")


class DpInvalid(InvalidInput):
    kind = "invalid-dp-release"
    title = "The differentially private release cannot be planned or computed as asked"


class DpFailed(DomainError):
    """Computing a planned release failed; nothing was released (the ledger charge is refunded)."""

    kind = "dp-release-failed"
    title = "The differentially private release could not be computed"


@dataclass(frozen=True)
class Reliability:
    """When a published cell is flagged ``low_reliability`` (see the module docstring)."""

    max_relative_half_width: float = 0.5
    max_rate_interval_width: float = 0.30  # on the proportion scale, 0.30 = 30 percentage points


@dataclass(frozen=True)
class DpPlan:
    """Everything a release will do, fixed before any data is read. ``epsilon`` is the exact
    privacy loss (per person) that :func:`release` spends; charge it to the ledger first."""

    dimensions: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    unit: str
    kind: Literal["count", "rate"]
    epsilon: float
    delta: float
    epsilon_per_release: float
    max_contributions: int
    scale: float
    reliability: Reliability
    measurement: Any = field(repr=False, compare=False)
    mechanism: Any = field(repr=False, compare=False)
    counts_domain: Any = field(repr=False, compare=False)
    domain: Any = field(repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) + 1 for c in self.categories)

    def parameters(self) -> dict[str, Any]:
        """JSON-ready description of the release method, for its stored parameters."""
        return {
            "mechanism": MECHANISM,
            "privacy_unit": "person (linkage token)",
            "epsilon": self.epsilon,
            "delta": self.delta,
            "epsilon_per_release": self.epsilon_per_release,
            "max_contributions": self.max_contributions,
            "noise_scale": self.scale,
            "margins": "sums of the noisy finest cells",
            "confidence": CONFIDENCE,
            "interval": (
                "exact, sum of discrete Laplace draws"
                if self.kind == "count"
                else "numerator and complement at 97.5% each, combined (Bonferroni)"
            ),
            "low_reliability": {
                "max_relative_half_width": self.reliability.max_relative_half_width,
                "max_rate_interval_width": self.reliability.max_rate_interval_width,
            },
            "opendp": _OPENDP_VERSION,
        }


@dataclass(frozen=True)
class DpResult:
    """Published cells (in :meth:`Cube.coordinates` order) and the published counts as a cube."""

    cells: list[dict[str, Any]]
    cube: Cube
    parameters: dict[str, Any]


def _check_inputs(
    dimensions: Sequence[str],
    categories: Sequence[Sequence[str]],
    unit: str,
    epsilon_per_release: float,
    max_contributions: int,
    reliability: Reliability,
) -> None:
    if len(set(dimensions)) != len(dimensions):
        raise DpInvalid("A dimension is listed twice.")
    if len(categories) != len(dimensions):
        raise DpInvalid("Every dimension needs its list of public categories.")
    for dim, cats in zip(dimensions, categories, strict=True):
        if dim.startswith("__bb_") or not dim:
            raise DpInvalid("A dimension name is reserved or empty.")
        if not cats:
            raise DpInvalid(f"Dimension {dim} has no public categories.")
        if len(set(cats)) != len(cats):
            raise DpInvalid(f"Dimension {dim} lists a category twice.")
        if TOTAL in cats:
            raise DpInvalid(f"Dimension {dim} uses the reserved total label as a category.")
    if unit not in UNIT_SCALE:
        raise DpInvalid(
            "Differential privacy supports counts and rates (percent, rate_per_1000) only."
        )
    if isinstance(epsilon_per_release, bool) or not isinstance(epsilon_per_release, int | float):
        raise DpInvalid("epsilon_per_release must be a number.")
    if not (math.isfinite(epsilon_per_release) and epsilon_per_release > 0):
        raise DpInvalid("epsilon_per_release must be a positive finite number.")
    if (
        isinstance(max_contributions, bool)
        or not isinstance(max_contributions, int)
        or max_contributions < 1
    ):
        raise DpInvalid("max_contributions must be a positive integer.")
    if not (
        reliability.max_relative_half_width > 0 and 0 < reliability.max_rate_interval_width <= 1
    ):
        raise DpInvalid("The low-reliability thresholds are out of range.")


def _keys(categories: tuple[tuple[str, ...], ...], dims: tuple[str, ...], rate: bool) -> Any:
    columns = list(dims) + ([_FLAG] if rate else [])
    values: list[Sequence[Any]] = [*categories] + ([[False, True]] if rate else [])
    rows = list(itertools.product(*values))
    schema = {d: pl.String for d in dims} | ({_FLAG: pl.Boolean} if rate else {})
    keys = pl.DataFrame(rows, schema=schema, orient="row").select(columns)
    return keys.with_columns(
        pl.col(d).cast(pl.Enum(list(c))) for d, c in zip(dims, categories, strict=True)
    )


def plan(
    dimensions: Sequence[str],
    categories: Sequence[Sequence[str]],
    unit: str,
    epsilon_per_release: float,
    max_contributions: int,
    reliability: Reliability = Reliability(),
) -> DpPlan:
    """Build the OpenDP measurement of a release and the exact privacy loss it will spend.

    ``categories`` are the public values of each dimension declared in the agreement (never read
    from data); ``unit`` is ``count`` (people counted) or ``percent``/``rate_per_1000`` (a rate
    from a numerator and a denominator). The loss is at most ``epsilon_per_release``.
    """
    dims = tuple(dimensions)
    cats = tuple(tuple(str(v) for v in c) for c in categories)
    _check_inputs(dims, cats, unit, epsilon_per_release, max_contributions, reliability)
    rate = unit != Unit.COUNT
    # The dimensions as enumerations of their public values: a small integer per record where
    # text would take 16 bytes or more, in the frame and in OpenDP's grouping.
    schema: dict[str, Any] = {_PERSON: pl.UInt64} | {
        d: pl.Enum(list(c)) for d, c in zip(dims, cats, strict=True)
    }
    series = [dp.series_domain(_PERSON, dp.atom_domain(T="u64"))]
    series += [
        dp.series_domain(d, dp.enum_domain(pl.Series(list(c), dtype=pl.String)))
        for d, c in zip(dims, cats, strict=True)
    ]
    if rate:
        schema[_FLAG] = pl.Boolean
        series.append(dp.series_domain(_FLAG, dp.atom_domain(T="bool")))
    domain = dp.lazyframe_domain(series)
    by = list(dims) + ([_FLAG] if rate else [])
    try:
        context = dp.Context.compositor(
            data=pl.LazyFrame(schema=schema),
            privacy_unit=dp.unit_of(contributions=1, identifier=_PERSON),
            privacy_loss=dp.loss_of(epsilon=float(epsilon_per_release)),
            split_evenly_over=1,
            domain=domain,
        )
        query = context.query().truncate_per_group(max_contributions, keep="first")
        count = dp_len(signed=True).alias(_COUNT)
        if by:
            query = query.group_by(*by).agg(count).with_keys(_keys(cats, dims, rate))
        else:
            query = query.select(count)
        lazy = object.__getattribute__(query, "polars_plan")

        def measure(scale: float) -> Any:
            return dp.m.make_private_lazyframe(
                domain,
                dp.symmetric_id_distance(_PERSON),
                dp.max_divergence(),
                lazy,
                global_scale=scale,
            )

        # The loss at scale 1 is the sensitivity OpenDP derives from the truncation: the L1 bound
        # of the table of finest counts, which :func:`_exact_counts` enforces. Dividing by epsilon
        # gives the scale directly, where LazyFrameQuery.resolve would binary-search it (seconds
        # per release, same answer). OpenDP's maps then check the result.
        sensitivity = float(measure(1.0).map(1))
        if sensitivity != max_contributions:
            raise DpInvalid("OpenDP derives another sensitivity than the contribution bound.")
        cells = math.prod(len(c) for c in cats) * (2 if rate else 1)
        counts = dp.vector_domain(dp.atom_domain(T="i64"), size=cells)

        def noise(scale: float) -> Any:
            return dp.m.make_laplace(counts, dp.l1_distance(T="i64"), scale)

        def losses(scale: float) -> tuple[Any, Any, float]:
            person_level, vector = measure(scale), noise(scale)
            loss = max(float(person_level.map(1)), float(vector.map(max_contributions)))
            return person_level, vector, loss

        scale = sensitivity / float(epsilon_per_release)
        measurement, mechanism, spent = losses(scale)
        for _ in range(64):  # float rounding can leave the loss a few ulps above the target
            if spent <= epsilon_per_release:
                break
            scale = math.nextafter(scale, math.inf)
            measurement, mechanism, spent = losses(scale)
    except dp.OpenDPException as exc:
        raise DpInvalid("OpenDP cannot build this release.") from exc
    if spent > epsilon_per_release:
        raise DpInvalid("OpenDP cannot fit this release within its epsilon.")
    return DpPlan(
        dimensions=dims,
        categories=cats,
        unit=unit,
        kind="rate" if rate else "count",
        epsilon=spent,
        delta=0.0,
        epsilon_per_release=float(epsilon_per_release),
        max_contributions=max_contributions,
        scale=scale,
        reliability=reliability,
        measurement=measurement,
        mechanism=mechanism,
        counts_domain=counts,
        domain=domain,
    )


def _exact_counts(
    frame: pl.DataFrame, p: DpPlan, person: str, numerator: pl.Expr | None
) -> np.ndarray:
    """The exact finest counts after person-local preprocessing and contribution bounding, with
    a trailing axis [complement, numerator] for rates: what OpenDP's planned query
    (``p.measurement``) counts, computed here with about 20 bytes a record where OpenDP's polars
    plan held about 110.

    Every step depends on one person's records only: records outside the public categories are
    dropped; each person is one 64-bit identifier (the service's hash of the linkage token, or
    the hash of the person column: a collision, about one chance in 100,000 for 20 million
    people, would merge two people into one identifier, as it did in OpenDP's plan); each person
    is reduced to one row per cell (in a rate's numerator when any of their records in that cell
    is); a person with more than ``max_contributions`` such rows keeps a uniformly random choice
    of that many (OpenDP's ``truncate_per_group`` over shuffled rows kept the same). So one
    person adds 1 to at most ``max_contributions`` entries of the table, each once: its L1
    sensitivity is ``max_contributions``, the bound OpenDP derives for the planned query, and
    the noise is OpenDP's vector mechanism at that sensitivity (see :func:`plan`).

    One 64-bit key a row, the person's bits then the (cell, flag) code in mixed radix, sorted in
    place, replaces any group-by: the reduction and the truncation are runs of equal keys."""
    needed = [person, *p.dimensions]
    if any(c not in frame.columns for c in needed):
        raise DpInvalid("The frame lacks the person column or a dimension column.")
    if p.kind == "rate" and numerator is None:
        raise DpInvalid("A rate needs the numerator filter.")
    rate = p.kind == "rate"
    try:
        lazy = frame.lazy()
        if p.kind == "count" and numerator is not None:
            lazy = lazy.filter(numerator)
        # The service gives the person as a 64-bit hash of the linkage token; any other column
        # is hashed to one (OpenDP's identifier was that hash, too).
        ident = pl.col(person)
        if frame.schema[person] != pl.UInt64:
            ident = ident.hash()
        columns = [ident.alias(_PERSON), *(pl.col(d) for d in p.dimensions)]
        if rate:
            assert numerator is not None
            columns.append(numerator.cast(pl.Boolean).fill_null(False).alias(_FLAG))
        selected = lazy.select(columns).collect()
        if selected.get_column(_PERSON).null_count():
            selected = selected.with_columns(pl.col(_PERSON).hash())
    except pl.exceptions.PolarsError:
        # Polars messages may quote data; the caller gets a fixed message instead.
        raise DpInvalid("The frame or the numerator filter cannot be evaluated.") from None
    sizes = tuple(len(c) for c in p.categories) + ((2,) if rate else ())
    radix = math.prod(sizes)
    shift = max(radix - 1, 1).bit_length()  # the code's bits in a key
    if selected.height << shift >= 1 << 63:
        raise DpInvalid("The release has too many cells for its number of records.")
    # Each row's (cell, flag) as one integer in mixed radix, the flag its lowest digit.
    digit = np.uint32 if radix < 1 << 32 else np.uint64
    codes: np.ndarray = np.zeros(selected.height, dtype=digit)
    inside = np.ones(selected.height, dtype=bool)
    stride = radix
    for d, cats in zip(p.dimensions, p.categories, strict=True):
        stride //= len(cats)
        position = label_positions(selected.get_column(d), {c: i for i, c in enumerate(cats)})
        inside &= position >= 0
        part: np.ndarray = np.maximum(position, 0).astype(digit)
        del position
        part *= digit(stride)
        codes += part
        del part
    if rate:
        codes += selected.get_column(_FLAG).to_numpy().astype(digit)
    ids = selected.get_column(_PERSON).to_numpy()
    del selected
    if not inside.all():
        ids, codes = ids[inside], codes[inside]
    del inside
    if not ids.flags.writeable:
        ids = ids.copy()
    key = _row_keys(ids, codes, shift)
    del ids, codes
    key.sort()
    # One row per person and cell: the last of each run of (person, cell), which for a rate is
    # the one in the numerator if any is (the flag is the lowest digit).
    cell_of = key >> np.uint64(1) if rate else key
    last = np.ones(key.size, dtype=bool)
    last[:-1] = cell_of[1:] != cell_of[:-1]
    del cell_of
    key = key[last]
    del last
    key = _truncate(key, shift, p.max_contributions)
    key &= np.uint64((1 << shift) - 1)
    counts = np.bincount(key.astype(np.int64), minlength=radix)
    return counts.astype(np.int64).reshape(sizes)


def _row_keys(ids: np.ndarray, codes: np.ndarray, shift: int) -> np.ndarray:
    """One key a row, person << shift | code, unsorted; ``ids`` (writable) is reused.

    The person is the identifier without its ``shift`` low bits when that tells apart as many
    people as the identifier (sorting 64-bit integers in place is fast); otherwise (two people
    would share a key, a chance of about N^2 / 2^(65 - shift)) the person's dense number in
    order of the identifier, by an argsort (slower; 8 bytes a row where polars' arg_sort and
    rank held about 34)."""
    ordered = np.sort(ids)
    people = 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))
    ordered >>= np.uint64(shift)
    tops = 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))
    del ordered
    if tops == people:
        ids >>= np.uint64(shift)
        key = ids
    else:
        order = np.argsort(ids)
        codes = codes[order]
        del order
        ids.sort()
        new_person = ids[1:] != ids[:-1]
        key = ids
        key[:1] = 0
        key[1:] = new_person
        del new_person
        np.cumsum(key, out=key)
    key <<= np.uint64(shift)
    key |= codes
    return key


def _truncate(key: np.ndarray, shift: int, bound: int) -> np.ndarray:
    """Keep at most ``bound`` rows of each person (sorted keys, person = key >> shift), a
    uniformly random choice of them for a person above the bound: Floyd's sampling of ``bound``
    of a person's ``m`` rows, one draw per person at a time (a byte a row, the rest per person)."""
    owner = key >> np.uint64(shift)
    # Sorted, a person has more than ``bound`` rows exactly when some row's person is also the
    # person ``bound`` rows further on.
    if not np.any(owner[bound:] == owner[:-bound]):
        return key
    boundary = np.ones(owner.size, dtype=bool)
    np.not_equal(owner[1:], owner[:-1], out=boundary[1:])
    del owner
    starts = np.flatnonzero(boundary)
    del boundary
    runs = np.diff(starts, append=key.size)
    keep = np.repeat(runs <= bound, runs)
    over = runs > bound
    first, size = starts[over], runs[over]
    del starts, runs, over
    rng = np.random.default_rng()
    # Floyd: for j = m - bound .. m - 1, draw t uniform in [0, j]; take t, or j if t is taken.
    for step in range(bound):
        j = size - bound + step
        t = rng.integers(0, j + 1)
        row = first + t
        taken = keep[row]
        row[taken] = first[taken] + j[taken]
        keep[row] = True
    out: np.ndarray = key[keep]
    return out


def _noisy_cells(p: DpPlan, exact: np.ndarray) -> np.ndarray:
    """Run the planned noise once through an OpenDP Context whose privacy unit is the table's L1
    sensitivity (``max_contributions``) and whose budget is exactly ``p.epsilon``."""
    context = dp.Context.compositor(
        data=[int(v) for v in exact.ravel()],
        privacy_unit=(dp.l1_distance(T="i64"), p.max_contributions),
        privacy_loss=dp.loss_of(epsilon=p.epsilon),
        split_evenly_over=1,
        domain=p.counts_domain,
    )
    out = context(p.mechanism)
    if len(out) != exact.size:
        raise DpFailed("OpenDP returned an incomplete table.")
    return np.asarray(out, dtype=np.int64).reshape(exact.shape)


def _with_margins(values: np.ndarray, axes: int) -> np.ndarray:
    """Append the total along each of the first ``axes`` axes (the last index is the total)."""
    for axis in range(axes):
        values = np.concatenate([values, values.sum(axis=axis, keepdims=True)], axis=axis)
    return values


def _half_widths(m: np.ndarray, scale: float, alpha: float) -> np.ndarray:
    out = np.zeros(m.shape, dtype=np.int64)
    for v in np.unique(m):
        out[m == v] = half_width(int(v), scale, alpha)
    return out


def _round_down(x: np.ndarray) -> np.ndarray:
    return np.floor(x * 10.0) / 10.0


def _round_up(x: np.ndarray) -> np.ndarray:
    return np.ceil(x * 10.0) / 10.0


def _cells(p: DpPlan, noisy: np.ndarray) -> tuple[list[dict[str, Any]], Cube]:
    d = len(p.dimensions)
    finest = tuple(len(c) for c in p.categories)
    m = _with_margins(np.ones(finest, dtype=np.int64), d)
    rel = p.reliability
    if p.kind == "count":
        raw = _with_margins(noisy, d)
        t = _half_widths(m, p.scale, 1.0 - CONFIDENCE)
        num = np.maximum(raw, 0)
        den = None
        value = num.astype(np.float64)
        lower = np.maximum(raw - t, 0).astype(np.float64)
        upper = np.maximum(raw + t, 0).astype(np.float64)
        low = t > rel.max_relative_half_width * num
        defined = np.ones(num.shape, dtype=bool)
    else:
        n_raw = _with_margins(noisy[..., 1], d)
        c_raw = _with_margins(noisy[..., 0], d)
        alpha = (1.0 - CONFIDENCE) / 2.0  # Bonferroni over numerator and complement
        t = _half_widths(m, p.scale, alpha)
        t_den = _half_widths(2 * m, p.scale, 1.0 - CONFIDENCE)
        num = np.maximum(n_raw, 0)
        den = num + np.maximum(c_raw, 0)
        n_lo, n_hi = np.maximum(n_raw - t, 0), np.maximum(n_raw + t, 0)
        c_lo, c_hi = np.maximum(c_raw - t, 0), np.maximum(c_raw + t, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lo = np.where(n_lo + c_hi > 0, n_lo / (n_lo + c_hi), 0.0)
            hi = np.where(n_hi + c_lo > 0, n_hi / (n_hi + c_lo), 1.0)
        defined = den > 0
        low = (
            ~defined
            | (t_den > rel.max_relative_half_width * den)
            | (hi - lo > rel.max_rate_interval_width)
        )
        factor = UNIT_SCALE[p.unit]
        # Same arithmetic and rounding as the suppression path, so equal counts give equal values.
        value = np.array(
            [
                round(factor * float(n) / float(d), 1) if d else np.nan
                for n, d in zip(num.ravel(), den.ravel(), strict=True)
            ]
        ).reshape(num.shape)
        lower = np.clip(_round_down(lo * factor), 0.0, factor)
        upper = np.clip(_round_up(hi * factor), 0.0, factor)
    cube = Cube(p.dimensions, p.categories, num, den)
    cells: list[dict[str, Any]] = []
    for index in cube.coordinates():
        cell: dict[str, Any] = dict(zip(p.dimensions, cube.labels(index), strict=True))
        ok = bool(defined[index])
        cell.update(
            {
                "numerator": int(num[index]),
                "denominator": int(den[index]) if den is not None else None,
                "value": float(value[index]) if ok else None,
                "status": LOW_RELIABILITY if bool(low[index]) else DP,
                "lower": float(lower[index]) if ok else None,
                "upper": float(upper[index]) if ok else None,
            }
        )
        cells.append(cell)
    return cells, cube


def release(
    frame: pl.DataFrame,
    p: DpPlan,
    *,
    person: str,
    numerator: pl.Expr | None = None,
    noise: np.ndarray | None = None,
) -> DpResult:
    """Compute the planned release on ``frame`` (person-level records, already restricted to the
    population: denominator filter and any cohort applied). For a rate, ``numerator`` is the
    boolean filter expression selecting numerator records within ``frame``; for a count it
    optionally selects the records counted. Spends exactly ``p.epsilon``, once: it never retries.

    ``noise`` is for tests only and must stay ``None`` in the service: when given (integers, the
    shape of the finest cells, with a trailing axis [complement, numerator] for rates) it replaces
    the noise OpenDP draws, so post-processing (margins, intervals, statuses) can be asserted
    exactly. ``noise`` is added to the same exact counts (truncation included) that OpenDP's
    mechanism would receive; the published cells use ``p`` as planned.
    """
    exact = _exact_counts(frame, p, person, numerator)
    try:
        if noise is None:
            noisy = _noisy_cells(p, exact)
        else:
            if noise.shape != exact.shape or not np.issubdtype(noise.dtype, np.integer):
                raise DpInvalid("The injected noise must be integers shaped like the cells.")
            noisy = exact + noise
        cells, cube = _cells(p, noisy)
    except (DpFailed, DpInvalid):
        raise
    except Exception as exc:
        # Past this point noise may have been drawn: fail closed, release nothing, never retry.
        # The cause is not chained: library messages can quote data.
        raise DpFailed(
            f"Computing the differentially private release failed ({type(exc).__name__})."
        ) from None
    return DpResult(cells=cells, cube=cube, parameters=p.parameters())
