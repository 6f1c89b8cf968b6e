"""Small-cell suppression: cell statuses and the primary rule.

Statuses follow the SDMX confidentiality and observation-status code lists (``OBS_STATUS`` /
``CONF_STATUS``): ``free`` (F), ``suppressed`` (C, confidential), ``rounded`` (the value is published in a coarsened
form: rounded, or top/bottom coded), ``dp`` (differentially private, with its interval),
``low_reliability`` (U, published but unreliable) and ``structural_zero`` (M: the agreement
declares that the combination cannot exist, so its count is 0 for everyone to know).

Inside the engine a withheld cell is ``primary`` (a quantity of its own is under k) or
``secondary`` (withheld so that no primary cell can be derived); readers see ``suppressed`` for
both. Publishing the difference would tell them on which side of k a withheld cell lies: that a
cell is *not* small is information too, and together with other releases it can pin a small one.

Primary rule (``primary_mask``), with k the strictest minimum cell size of the contributing
agreements:

* a count table: a cell is primary when its count is under k; zero counts are under k too;
* a rate table: a cell is primary when its numerator, its denominator, or its complement
  (denominator minus numerator) is under k, so that neither "2 of 80 children" nor "100% of 6
  children" is ever published. An empty population (denominator 0) is under k like any other:
  publishing it as empty would answer "is anyone in this set?".

The one exception is a *structural* zero: a cell the agreement declares impossible is known to
be empty before any data arrives, so it reveals nothing and is published as such.

The quantities that are under k are the cell's *sensitive quantities*: they are what the
secondary suppression (:mod:`disclosure.protection`) must keep an attacker from narrowing.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from disclosure.cube import Cube
from disclosure.vocabulary import CellStatus

# Cell statuses (see disclosure.vocabulary.CellStatus) as the plain strings the arrays hold.
FREE: Final = CellStatus.FREE.value
SUPPRESSED: Final = CellStatus.SUPPRESSED.value
PRIMARY: Final = CellStatus.PRIMARY.value
SECONDARY: Final = CellStatus.SECONDARY.value
ROUNDED: Final = CellStatus.ROUNDED.value
DP: Final = CellStatus.DP.value
LOW_RELIABILITY: Final = CellStatus.LOW_RELIABILITY.value
STRUCTURAL: Final = CellStatus.STRUCTURAL_ZERO.value

NUMERATOR: Final = "numerator"
DENOMINATOR: Final = "denominator"
COMPLEMENT: Final = "complement"
QUANTITIES: Final = (NUMERATOR, DENOMINATOR, COMPLEMENT)


def check_k(k: int) -> int:
    """Validate a minimum cell size."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError("the minimum cell size k must be an integer of at least 1")
    return int(k)


def sensitive(
    numerator: np.ndarray,
    denominator: np.ndarray | None,
    k: int,
    structural: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per quantity, the mask of cells where that quantity is under k.

    ``structural`` marks the cells known to be empty (their population, or in a count table
    their count, is a structural zero): nothing of theirs is sensitive.
    """
    k = check_k(k)
    live = (
        np.ones(np.shape(numerator), dtype=bool)
        if structural is None
        else ~np.asarray(structural, dtype=bool)
    )
    if denominator is None:
        return {NUMERATOR: live & (numerator < k)}
    return {
        NUMERATOR: live & (numerator < k),
        DENOMINATOR: live & (denominator < k),
        COMPLEMENT: live & ((denominator - numerator) < k),
    }


def primary_mask(cube: Cube, k: int, structural: np.ndarray | None = None) -> np.ndarray:
    """Cells to suppress because a quantity of theirs counts fewer than k people."""
    masks = sensitive(cube.numerator, cube.denominator, k, structural)
    out = np.zeros(cube.shape, dtype=bool)
    for mask in masks.values():
        out |= mask
    return out
