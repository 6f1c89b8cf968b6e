"""The demo initiative's three-dimensional releases at real size keep their totals published.

About 13,000 kindergartners and 15,000 births over 5 periods x 40 neighborhoods x 7 races: most
cells are small, and secondary suppression used to hide the period totals and the grand total
(the figures a dashboard shows first) although interior cells can protect every small one.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from aggregation.stored import release_cells
from demo.generator import generate
from demo.initiative import BIRTH_YEARS, NEIGHBORHOODS, RACE_ETHNICITY, SCHOOL_YEARS
from disclosure.cube import TOTAL, build_cube
from disclosure.protection import Protection, protect
from disclosure.suppression import FREE, PRIMARY, SECONDARY
from tests.aggregation.attack import Attacker, sensitive_requirements
from tests.aggregation.test_protection import shown

pytestmark = pytest.mark.slow

# (indicator, dataset, person, period dimension, its categories, outcome, k of the agreement)
INDICATORS = (
    (
        "kindergarten-readiness",
        "kindergarten_readiness",
        "student_id",
        "school_year",
        SCHOOL_YEARS,
        pl.col("ready"),
        10,
    ),
    (
        "low-birth-weight",
        "births",
        "child_id",
        "birth_year",
        BIRTH_YEARS,
        pl.col("birth_weight_grams") < 2500,
        11,
    ),
)


@pytest.fixture(scope="module")
def releases() -> dict[str, Protection]:
    data = generate()
    out = {}
    for name, dataset, person, period, periods, outcome, k in INDICATORS:
        frame = getattr(data, dataset)
        dims = (period, "neighborhood", "race_ethnicity")
        cube = build_cube(
            frame.filter(outcome), frame, person, dims, (periods, NEIGHBORHOODS, RACE_ETHNICITY)
        )
        out[name] = protect(cube, k, unit="percent")
    return out


@pytest.mark.parametrize("name", [i[0] for i in INDICATORS])
def test_period_totals_and_grand_total_are_published(releases, name):
    pr = releases[name]
    assert pr.proof.ok
    summary = pr.proof.summary()
    assert summary["violations"] == 0 and summary["limited"] == 0
    periods = pr.table.categories[0]
    totals = [
        c for c in release_cells(pr) if c["neighborhood"] == TOTAL and c["race_ethnicity"] == TOTAL
    ]
    assert len(totals) == len(periods) + 1
    for cell in totals:
        assert cell["status"] == FREE, cell
        assert cell["numerator"] is not None and cell["denominator"] >= 1000
    grand = pr.table.denominator[-1, -1, -1]
    assert totals[-1]["denominator"] == grand
    # The table is sparse (most cells primary), yet the interior does the protecting.
    status = pr.status
    assert (status == PRIMARY).sum() > 900
    level = sum(
        np.indices(status.shape)[axis] == status.shape[axis] - 1 for axis in range(status.ndim)
    )
    headline = level >= 2  # one-dimensional margins and the grand total
    assert (headline & (status == SECONDARY)).sum() <= 3


@pytest.mark.parametrize("name", [i[0] for i in INDICATORS])
def test_small_margins_next_to_the_published_totals_pass_the_independent_attacker(releases, name):
    """Period x race and period x neighborhood cells sum to the published period totals: the
    independent attacker checks their small quantities (a sample, for time)."""
    pr = releases[name]
    attacker = Attacker(pr.table, [shown(pr)])
    dims = pr.table.dimensions
    nearest = [
        r
        for r in sensitive_requirements(pr.table, pr.k)
        if r[0][0] != TOTAL and (r[0][1] == TOTAL) != (r[0][2] == TOTAL)
    ]
    assert len(nearest) > 40
    for labels, quantity, lower, upper in nearest[:: len(nearest) // 8][:8]:
        low, high = attacker.interval(dims, labels, quantity)
        assert low <= lower + 1e-6 and high >= upper - 1e-6, (labels, quantity, low, high)
