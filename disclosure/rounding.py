"""Rounding of published counts and top/bottom coding of published percentages.

Pure functions from true counts to what is published and to what the published form tells an
attacker (the interval the true count must lie in). Rounding is applied cell by cell, margins
included, so a rounded table is not additive; that is part of the protection, and it is why the
attacker model (:mod:`disclosure.attacker`) treats each rounded value as the interval below,
never as a number.

Schemes (:class:`policy.vocabulary.RoundingScheme`):

``none``
    Counts are published exactly.
``base5``
    Conventional rounding to the nearest multiple of 5 (0-2 -> 0, 3-7 -> 5, 8-12 -> 10, ...).
    A published r means the true count is in [r - 2, r + 2] (and at least 0). A rate is computed
    from the rounded numerator and denominator, so it reveals nothing the rounded counts do not.
``midpoint6``
    Counts are grouped into bands of six consecutive integers, [6j, 6j + 5], and published as
    the band's midpoint 6j + 2.5. Meant for rates: the published rate is the ratio of the two
    midpoints, and its published interval runs from (lowest numerator / highest denominator) to
    (highest numerator / lowest denominator) of the two bands, capped at 100%. It is stricter
    than base 5: every band holds six true values instead of five, no published count is ever a
    true count, and a published rate is never the exact rate (the midpoints are half-integers).

Coding (``top_code_percent`` / ``bottom_code_percent``): a published rate at or above the top
code (at or below the bottom code) is published only as that range, for example ">= 95%": the
numerator is withheld, the denominator is published (rounded if rounding applies), and the cell
carries status ``rounded``. Because additivity could otherwise give the numerator back (a row
total minus the other cells), a coded cell is protected like a suppressed one: the published
table must not narrow its rate inside the coded range (see :mod:`disclosure.protection`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policy.vocabulary import RoundingScheme


def check_scheme(scheme: str) -> str:
    """``scheme`` as a plain string, if it names a rounding scheme."""
    try:
        return RoundingScheme(scheme).value
    except ValueError:
        expected = ", ".join(RoundingScheme)
        raise ValueError(f"unknown rounding scheme; expected one of {expected}") from None


@dataclass(frozen=True)
class Rounded:
    """Published values of an array of counts and the interval each true count must lie in."""

    published: np.ndarray  # float
    lower: np.ndarray  # float, the smallest true count consistent with the published value
    upper: np.ndarray  # float, the largest


def round_counts(counts: np.ndarray, scheme: str) -> Rounded:
    """Round an array of non-negative integer counts under ``scheme``."""
    check_scheme(scheme)
    v = np.asarray(counts, dtype=np.int64)
    if np.any(v < 0):
        raise ValueError("counts are never negative")
    if scheme == RoundingScheme.BASE5:
        r = 5 * ((v + 2) // 5)
        return Rounded(r.astype(float), np.maximum(r - 2, 0).astype(float), (r + 2).astype(float))
    if scheme == RoundingScheme.MIDPOINT6:
        low = 6 * (v // 6)
        return Rounded((low + 2.5).astype(float), low.astype(float), (low + 5).astype(float))
    f = v.astype(float)
    return Rounded(f, f.copy(), f.copy())


def interval_of(published: float, scheme: str) -> tuple[float, float]:
    """The interval of true counts that a published (rounded) count stands for."""
    check_scheme(scheme)
    if scheme == RoundingScheme.BASE5:
        return max(published - 2.0, 0.0), published + 2.0
    if scheme == RoundingScheme.MIDPOINT6:
        return published - 2.5, published + 2.5
    return published, published


def ratio(numerator: float, denominator: float, scale: float, decimals: int = 1) -> float | None:
    """``scale`` times numerator / denominator, rounded for publication (None if undefined)."""
    if denominator <= 0:
        return None
    return round(scale * numerator / denominator, decimals)


def ratio_bounds(
    num_lower: float, num_upper: float, den_lower: float, den_upper: float, scale: float
) -> tuple[float, float]:
    """Bounds of scale * x / n over x in [num_lower, num_upper], n in [den_lower, den_upper],
    x <= n (the numerator counts a subset of the population)."""
    low = 0.0 if den_upper <= 0 else num_lower / den_upper
    high = 1.0 if den_lower <= 0 else min(1.0, num_upper / den_lower)
    return round(scale * low, 1), round(scale * min(high, 1.0), 1)


def coded(
    numerator: np.ndarray,
    denominator: np.ndarray,
    top_code_percent: float | None,
    bottom_code_percent: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the cells whose true rate is at or above the top code and at or below the bottom
    code (cells with an empty population are in neither)."""
    num = np.asarray(numerator, dtype=np.int64)
    den = np.asarray(denominator, dtype=np.int64)
    live = den > 0
    top = np.zeros(num.shape, dtype=bool)
    bottom = np.zeros(num.shape, dtype=bool)
    if top_code_percent is not None:
        if not 50 < top_code_percent <= 100:
            raise ValueError("a top code is a percentage above 50 and at most 100")
        # Exact integer-friendly comparison: 100 x >= top n.
        top = live & (100.0 * num >= top_code_percent * den)
    if bottom_code_percent is not None:
        if not 0 <= bottom_code_percent < 50:
            raise ValueError("a bottom code is a percentage of at least 0 and under 50")
        bottom = live & (100.0 * num <= bottom_code_percent * den)
    return top, bottom
