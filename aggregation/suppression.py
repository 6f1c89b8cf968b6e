"""Small-cell suppression of a :class:`~aggregation.cube.Cube`: primary and secondary.

Primary: a cell is suppressed when its numerator or denominator counts fewer than k people, or
when the denominator minus the numerator does (so "100% of 6 children" is never published).
Secondary: along every line of the table (a cell row plus its margin) a lone suppressed cell
could be recovered by subtraction, so another cell of that line is suppressed too, repeated
until no line has exactly one suppressed cell.
"""

from __future__ import annotations

import itertools

import numpy as np

from aggregation.cube import Cube

FREE, PRIMARY, SECONDARY, EMPTY = "free", "primary", "secondary", "empty"


def primary_mask(cube: Cube, k: int) -> np.ndarray:
    num = cube.numerator
    if cube.denominator is None:
        return num < k
    den = cube.denominator
    return (den > 0) & ((num < k) | (den < k) | ((den - num) < k))


def _lines(shape: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
    """Every line of the table: (axis, index with that axis free)."""
    out: list[tuple[int, tuple[int, ...]]] = []
    for axis in range(len(shape)):
        others = [range(n) if i != axis else range(1) for i, n in enumerate(shape)]
        for idx in itertools.product(*others):
            out.append((axis, idx))
    return out


def secondary_mask(cube: Cube, primary: np.ndarray) -> np.ndarray:
    suppressed = primary.copy()
    shape = cube.shape
    weight = cube.denominator if cube.denominator is not None else cube.numerator
    lines = _lines(shape)
    changed = True
    while changed:
        changed = False
        for axis, base in lines:
            cells = [(*base[:axis], i, *base[axis + 1 :]) for i in range(shape[axis])]
            hidden = [c for c in cells if suppressed[c]]
            if len(hidden) != 1:
                continue
            candidates = [c for c in cells if not suppressed[c] and weight[c] > 0]
            if not candidates:
                continue
            # Prefer the interior cell with the smallest population: least information lost.
            interior = [c for c in candidates if c[axis] != shape[axis] - 1] or candidates
            pick = min(interior, key=lambda c: (int(weight[c]), c))
            suppressed[pick] = True
            changed = True
    return suppressed & ~primary


def statuses(cube: Cube, k: int) -> np.ndarray:
    """An array of status strings, one per cell of the cube."""
    primary = primary_mask(cube, k)
    secondary = secondary_mask(cube, primary)
    out = np.full(cube.shape, FREE, dtype=object)
    out[secondary] = SECONDARY
    out[primary] = PRIMARY
    if cube.denominator is not None:
        out[cube.denominator == 0] = EMPTY
    return out
