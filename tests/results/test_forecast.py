"""The baseline forecast: a least squares line through the actual values, projected."""

from __future__ import annotations

import pytest

from results.forecast import (
    ForecastPoint,
    following_periods,
    forecast,
    period_position,
    periods_through,
)


def test_a_straight_line_is_continued_exactly() -> None:
    points = [("2021-22", 50.0), ("2022-23", 52.0), ("2023-24", 54.0)]
    assert forecast(points, ["2024-25", "2025-26"]) == [
        ForecastPoint("2024-25", pytest.approx(56.0)),
        ForecastPoint("2025-26", pytest.approx(58.0)),
    ]


def test_the_least_squares_line_of_known_values() -> None:
    # x = 0..3, y = 1, 3, 2, 4: slope 0.8, intercept 1.3 (worked by hand).
    points = [("2020", 1.0), ("2021", 3.0), ("2022", 2.0), ("2023", 4.0)]
    out = forecast(points, ["2024", "2025"])
    assert [p.period for p in out] == ["2024", "2025"]
    assert out[0].value == pytest.approx(1.3 + 0.8 * 4)
    assert out[1].value == pytest.approx(1.3 + 0.8 * 5)


def test_points_are_taken_in_period_order_and_gaps_keep_their_place() -> None:
    # 2021 is missing: the line through (2020, 10) and (2022, 14) rises 2 a year.
    out = forecast([("2022", 14.0), ("2020", 10.0)], ["2023"])
    assert out == [ForecastPoint("2023", pytest.approx(16.0))]


def test_fewer_than_two_points_give_no_forecast() -> None:
    assert forecast([], ["2024"]) == []
    assert forecast([("2023", 5.0)], ["2024"]) == []


def test_labels_that_cannot_be_counted_in_use_consecutive_positions() -> None:
    out = forecast([("Q1", 1.0), ("Q2", 2.0), ("Q3", 3.0)], ["Q4", "next"])
    assert [round(p.value, 9) for p in out] == [4.0, 5.0]


def test_school_years_and_years_are_continued() -> None:
    assert following_periods("2026-27", 3) == ["2027-28", "2028-29", "2029-30"]
    assert following_periods("2099-00", 1) == ["2100-01"]
    assert following_periods("2026-2027", 1) == ["2027-2028"]
    assert following_periods("2026", 2) == ["2027", "2028"]
    assert following_periods("Fall 2026", 2) is None
    assert following_periods("2026-29", 1) is None
    assert periods_through("2023-24", "2025-26") == ["2024-25", "2025-26"]
    assert periods_through("2023-24", "2022-23") == []
    assert periods_through("2023-24", "2025") is None
    assert period_position("2021-22") == 2021 and period_position("x") is None


def test_years_as_positions_keep_the_line_precise() -> None:
    # Positions are years (about 2000): the line is computed about the first one, not zero.
    points = [("2021-22", 22.7), ("2022-23", 22.9), ("2023-24", 24.0)]
    (out,) = forecast(points, ["2024-25"])
    # slope 0.65, mean 23.2 at position 1: 23.2 + 0.65 * 2
    assert abs(out.value - 24.5) < 1e-12
