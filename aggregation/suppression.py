"""Small-cell suppression: cell statuses and the primary rule.

Statuses follow the SDMX confidentiality and observation-status code lists (``OBS_STATUS`` /
``CONF_STATUS``): ``free`` (F), ``primary`` (A, primary confidentiality due to small counts),
``secondary`` (D, secondary confidentiality), ``rounded`` (the value is published in a coarsened
form: rounded, or top/bottom coded), ``dp`` (differentially private, with its interval),
``low_reliability`` (U, published but unreliable) and ``empty`` (a rate whose population is
empty: there is nothing to divide by).

Primary rule (``primary_mask``), with k the strictest minimum cell size of the contributing
agreements:

* a count table: a cell is primary when its count is under k; zero counts are under k too;
* a rate table: a cell with an empty population (denominator 0) is ``empty``; otherwise it is
  primary when its numerator, its denominator, or its complement (denominator minus numerator)
  is under k, so that neither "2 of 80 children" nor "100% of 6 children" is ever published.

The quantities that are under k are the cell's *sensitive quantities*: they are what the
secondary suppression (:mod:`aggregation.protection`) must keep an attacker from narrowing.
Secondary suppression, rounding and coding live in :mod:`aggregation.protection`;
:func:`statuses` is the short form for callers that need only the status of each cell.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from aggregation.cube import Cube

FREE: Final = "free"
PRIMARY: Final = "primary"
SECONDARY: Final = "secondary"
ROUNDED: Final = "rounded"
DP: Final = "dp"
LOW_RELIABILITY: Final = "low_reliability"
EMPTY: Final = "empty"
STATUSES: Final = (FREE, PRIMARY, SECONDARY, ROUNDED, DP, LOW_RELIABILITY, EMPTY)
SUPPRESSED: Final = frozenset({PRIMARY, SECONDARY})

NUMERATOR: Final = "numerator"
DENOMINATOR: Final = "denominator"
COMPLEMENT: Final = "complement"
QUANTITIES: Final = (NUMERATOR, DENOMINATOR, COMPLEMENT)


def check_k(k: int) -> int:
    """Validate a minimum cell size."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError("the minimum cell size k must be an integer of at least 1")
    return int(k)


def empty_mask(cube: Cube) -> np.ndarray:
    """Cells of a rate table whose population is empty (never any in a count table)."""
    if cube.denominator is None:
        return np.zeros(cube.shape, dtype=bool)
    return np.asarray(cube.denominator == 0)


def sensitive(
    numerator: np.ndarray, denominator: np.ndarray | None, k: int
) -> dict[str, np.ndarray]:
    """Per quantity, the mask of cells where that quantity is under k (empty cells excluded)."""
    k = check_k(k)
    if denominator is None:
        return {NUMERATOR: numerator < k}
    live = denominator > 0
    return {
        NUMERATOR: live & (numerator < k),
        DENOMINATOR: live & (denominator < k),
        COMPLEMENT: live & ((denominator - numerator) < k),
    }


def primary_mask(cube: Cube, k: int) -> np.ndarray:
    """Cells to suppress because a quantity of theirs counts fewer than k people."""
    masks = sensitive(cube.numerator, cube.denominator, k)
    out = np.zeros(cube.shape, dtype=bool)
    for mask in masks.values():
        out |= mask
    return out


def statuses(cube: Cube, k: int) -> np.ndarray:
    """The status of every cell under primary and secondary suppression without rounding.

    Kept for callers that need only statuses; :func:`aggregation.protection.protect` returns
    the statuses together with the published values and the audit.
    """
    from aggregation.protection import protect

    return protect(cube, k).status
