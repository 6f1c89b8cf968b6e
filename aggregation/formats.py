"""Renderings of a stored release: JSON (headers and rows, like DHIS2's analytics responses), CSV,
and SDMX-CSV 2.0 with ``OBS_STATUS`` and ``CONF_STATUS``.

Cell statuses map to the SDMX code lists: CONF_STATUS F (free), C (confidential: withheld,
whether small or to protect a small one); OBS_STATUS A (normal), Q (missing value: withheld),
E (estimated: rounded or differentially private), U (low reliability), M (missing: cannot exist,
a structural zero of the agreement). The exact Backbone status is kept in a custom ``BB_STATUS`` column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from disclosure.vocabulary import CellStatus, Unit

SDMX_CSV = "application/vnd.sdmx.data+csv; version=2.0.0"
STATUS_CODES: dict[str, tuple[str, str]] = {
    CellStatus.FREE: ("A", "F"),
    CellStatus.SUPPRESSED: ("Q", "C"),
    CellStatus.STRUCTURAL_ZERO: ("M", "F"),
    # Statuses of releases stored before every withheld cell became "suppressed".
    CellStatus.PRIMARY: ("Q", "C"),
    CellStatus.SECONDARY: ("Q", "D"),
    CellStatus.ROUNDED: ("E", "F"),
    CellStatus.DP: ("E", "F"),
    CellStatus.LOW_RELIABILITY: ("U", "F"),
    CellStatus.EMPTY: ("M", "F"),
}
VALUE_COLUMNS = ("numerator", "denominator", "value", "lower", "upper", "status")
UNITS: dict[str, str] = {
    Unit.PERCENT: "PC",
    Unit.RATE_PER_1000: "RT_1000",
    Unit.COUNT: "NR",
    Unit.MEAN: "MEAN",
}


def select(
    cells: Sequence[Mapping[str, Any]], filters: Mapping[str, frozenset[str]]
) -> list[Mapping[str, Any]]:
    """Cells whose dimension values are all among the requested ones (``_T`` for totals)."""
    if not filters:
        return list(cells)
    return [c for c in cells if all(str(c.get(dim)) in values for dim, values in filters.items())]


def to_json(
    summary: Mapping[str, Any],
    dimensions: Sequence[str],
    cells: Sequence[Mapping[str, Any]],
    pager: Mapping[str, Any],
) -> dict[str, Any]:
    headers = [*dimensions, *VALUE_COLUMNS]
    return {
        **summary,
        "headers": [
            {"name": h, "column": h, "kind": "dimension" if h in dimensions else "measure"}
            for h in headers
        ],
        "rows": [[cell.get(h) for h in headers] for cell in cells],
        "pager": dict(pager),
    }


def to_csv(dimensions: Sequence[str], cells: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*dimensions, *VALUE_COLUMNS])
    for cell in cells:
        writer.writerow(
            ["" if cell.get(h) is None else cell.get(h) for h in (*dimensions, *VALUE_COLUMNS)]
        )
    return out.getvalue()


def structure_id(indicator_id: str, version: int) -> str:
    return f"BACKBONE:DF_{indicator_id.upper().replace('-', '_').replace('.', '_')}({version}.0)"


def to_sdmx_csv(
    indicator_id: str,
    version: int,
    unit: str,
    dimensions: Sequence[str],
    cells: Sequence[Mapping[str, Any]],
) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    dims = [d.upper() for d in dimensions]
    writer.writerow(
        [
            "STRUCTURE",
            "STRUCTURE_ID",
            "ACTION",
            *dims,
            "OBS_VALUE",
            "UNIT_MEASURE",
            "OBS_STATUS",
            "CONF_STATUS",
            "OBS_LOWER",
            "OBS_UPPER",
            "NUMERATOR",
            "DENOMINATOR",
            "BB_STATUS",
        ]
    )
    sid = structure_id(indicator_id, version)
    unit_code = UNITS.get(unit, unit.upper())
    for cell in cells:
        status = str(cell.get("status"))
        obs, conf = STATUS_CODES.get(status, ("A", "F"))

        def v(key: str, cell: Mapping[str, Any] = cell) -> Any:
            value = cell.get(key)
            return "" if value is None else value

        writer.writerow(
            [
                "dataflow",
                sid,
                "I",
                *(cell.get(d) for d in dimensions),
                v("value"),
                unit_code,
                obs,
                conf,
                v("lower"),
                v("upper"),
                v("numerator"),
                v("denominator"),
                status,
            ]
        )
    return out.getvalue()
