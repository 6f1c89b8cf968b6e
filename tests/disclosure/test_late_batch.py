"""A late batch (a submission that only the release being made counts) is audited with its
records held in one category of every attribute that release does not read: the same counts,
the same attacker, far fewer unknowns.

The independent attacker (tests/disclosure/independent.py) knows nothing of the collapse: it
holds one unknown per combination of every attribute and submission, and finds no disclosure.
"""

from __future__ import annotations

import numpy as np
import pytest

import disclosure.joint as joint
from disclosure.joint import Shape
from disclosure.lattice import Axis, Lattice
from tests.disclosure.independent import disclosures
from tests.disclosure.scenarios import CATEGORIES, IMPOSSIBLE, History, people

EARLY = ["s0", "s1"]
LATE = ["s0", "s1", "s2"]


def shape(*dims: str, rate: bool = False) -> tuple[Shape, str]:
    return (
        Shape(
            dataset="survey",
            dims=dims,
            categories=tuple(CATEGORIES[d] for d in dims),
            numerator={"flag": "true"} if rate else {},
            denominator={} if rate else None,
        ),
        "percent" if rate else "count",
    )


def late_batch_history(seed: int) -> History:
    rng = np.random.default_rng(2000 + seed)
    records = people(rng, int(rng.integers(60, 160)))
    history = History(records, k=int(rng.choice([3, 5])))
    history.release(*shape("period", "area"), EARLY)
    history.release(*shape("period", "group", rate=True), EARLY)
    history.release(*shape("area", "band"), EARLY)
    return history


@pytest.mark.parametrize("seed", range(6))
def test_a_late_batch_by_fewer_attributes_discloses_nothing(seed):
    history = late_batch_history(seed)
    late = shape("period") if seed % 2 else shape("period", rate=True)
    history.release(*late, LATE)
    found = disclosures(history.records, CATEGORIES, LATE, history.shown, IMPOSSIBLE)
    assert found == []
    assert history.last.summary["violations"] == 0


def test_the_late_batch_is_collapsed_only_along_attributes_no_release_counting_it_reads():
    period = Axis("period", CATEGORIES["period"])
    area = Axis("area", CATEGORIES["area"])
    group = Axis("group", ("g0", "g1", "_rest"), rest=2)
    version = Axis(joint.VERSION_AXIS, ("v0", "v1"), ())
    lattice = Lattice((period, area, group, version))
    by_period, by_area = shape("period")[0], shape("period", "area")[0]
    sliced = Shape("survey", ("period",), (CATEGORIES["period"],), {"group": "g0"}, None)
    # Classes: v0 counted by both releases, v1 only by the first (by period, sliced by group).
    classes = [(True, True), (True, False)]
    assert joint._unread_axes(lattice, [sliced, by_area], classes) == {1: [(1, 0)]}
    # Read by nothing else than the period: area and group are collapsed, not onto group's rest
    # category (whose cells are protected as implied counts).
    group_first = Axis("group", ("_rest", "g1", "g2"), rest=0)
    lattice = Lattice((period, area, group_first, version))
    assert joint._unread_axes(lattice, [by_period, by_area], classes) == {
        0: [(2, 1)],  # no release reads the group at all
        1: [(1, 0), (2, 1)],
    }


def test_collapsed_cells_are_empty_and_the_kept_one_only_where_something_was_possible():
    # period (2) x area (3) x version (2): in version 1, area collapses onto category 0.
    impossible = np.zeros((2, 3, 2), dtype=bool)
    impossible[1, :, 1] = True  # period 1 holds nothing of version 1 at all
    impossible[0, 2, 1] = True  # and area 2 nothing in period 0
    out = joint._collapse_impossible(impossible, {1: [(1, 0)]})
    assert not out[..., 0].any()  # version 0 untouched
    assert out[0, :, 1].tolist() == [False, True, True]  # period 0: only the kept category
    assert out[1, :, 1].tolist() == [True, True, True]  # period 1: nothing, as before


def test_codes_are_moved_for_the_collapsed_class_only_and_missing_stays_missing():
    area = np.array([0, 2, 1, -1, 3], dtype=np.int64)
    version = np.array([0, 1, 1, 1, 0], dtype=np.int64)
    codes = [area.copy(), version]
    codes[0].flags.writeable = False  # as label_positions may return it
    joint._collapse_codes(codes, {1: [(0, 0)]})
    assert codes[0].tolist() == [0, 0, 0, -1, 3]


def test_the_collapse_leaves_the_audit_fewer_programs(monkeypatch):
    def late_release(collapse: bool) -> dict:
        if not collapse:
            monkeypatch.setattr(joint, "_unread_axes", lambda *a: {})
        history = late_batch_history(1)
        history.release(*shape("period"), LATE)
        monkeypatch.undo()
        return history.last.summary

    with_collapse, without = late_release(True), late_release(False)
    assert with_collapse["violations"] == without["violations"] == 0
    assert with_collapse["programs"] < without["programs"]
