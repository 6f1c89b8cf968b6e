"""A suppressed release as Backbone stores it, and back: the adapters between the
disclosure-control engine's arrays (:class:`disclosure.protection.Protection`,
:class:`disclosure.protection.PublishedTable`) and a release's stored cells and parameters.

The stored cell is the shared shape every read format serves: one dict per cell of the table
with all its margins, its labels under each dimension (``TOTAL`` for a margin), and
``numerator``, ``denominator``, ``value``, ``status``, ``lower``, ``upper``. The engine never sees
it: the service turns an earlier release's stored cells back into the table an attacker reads
before the joint audit of the next one (:func:`published_table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from disclosure.cube import TOTAL
from disclosure.protection import (
    BOTTOM,
    TOP,
    LinkedReleaseMismatch,
    Protection,
    PublishedTable,
    published_status,
)
from disclosure.rounding import check_scheme
from disclosure.suppression import ROUNDED, check_k
from policy.vocabulary import RoundingScheme


def release_cells(protection: Protection) -> list[dict[str, Any]]:
    """The release's cells in the stored shape, in the order of ``Cube.coordinates``."""
    table = protection.table
    out: list[dict[str, Any]] = []
    for index in table.coordinates():
        cell: dict[str, Any] = dict(zip(table.dimensions, table.labels(index), strict=True))
        cell.update(
            {
                "numerator": protection.numerator[index],
                "denominator": None
                if protection.denominator is None
                else protection.denominator[index],
                "value": protection.value[index],
                "status": published_status(str(protection.status[index])),
                "lower": protection.lower[index],
                "upper": protection.upper[index],
            }
        )
        out.append(cell)
    return out


def release_parameters(protection: Protection) -> dict[str, Any]:
    """What the release stores to be rebuilt as a :class:`PublishedTable` later."""
    return {
        "min_cell_size": protection.k,
        "rounding": protection.rounding,
        "top_code_percent": protection.top_code_percent,
        "bottom_code_percent": protection.bottom_code_percent,
        "protection_level": protection.protection_level,
    }


def published_table(
    dimensions: Sequence[str],
    categories: Sequence[Sequence[str]],
    cells: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    *,
    rate: bool,
) -> PublishedTable:
    """Rebuild what a stored release published, as the attacker reads it (raises
    :class:`LinkedReleaseMismatch` when its cells do not make its table)."""
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
    return PublishedTable(
        dimensions=dims,
        categories=cats,
        status=status,
        numerator=num,
        denominator=den,
        k=check_k(int(parameters["min_cell_size"])),
        rounding=check_scheme(str(parameters.get("rounding", RoundingScheme.NONE.value))),
        coded=coded,
        top_code_percent=parameters.get("top_code_percent"),
        bottom_code_percent=parameters.get("bottom_code_percent"),
        protection_level=parameters.get("protection_level"),
    )
