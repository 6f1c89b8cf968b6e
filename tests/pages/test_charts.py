"""The charts' specifications and text alternatives (no rendering needed for most)."""

from __future__ import annotations

from api.pages.charts import (
    Bar,
    ChartCache,
    Curve,
    CurvePoint,
    bars_spec,
    curve_alt,
    curve_spec,
    format_value,
)

CURVE = Curve(
    "Kindergarten readiness rate",
    "percent",
    "increase",
    "School year",
    (
        CurvePoint("2021-22", 50.2, status="free"),
        CurvePoint("2022-23", None, status="suppressed"),
        CurvePoint("2023-24", 53.1, 48.0, 58.0, "dp"),
        CurvePoint("2024-25", 54.0, 44.0, 64.0, "low_reliability"),
    ),
    forecast=(("2025-26", 55.5),),
    baseline=("2021-22", 50.0),
    target=("2025-26", 60.0),
)


def _rows(spec: dict) -> list[dict]:
    return [row for layer in spec["layer"] for row in layer.get("data", {}).get("values", [])] + (
        spec.get("data", {}).get("values", [])
    )


def test_a_withheld_value_is_a_gap_not_a_zero() -> None:
    spec = curve_spec(CURVE)
    actual = [r for r in _rows(spec) if r.get("series") == "Actual"]
    gap = next(r for r in actual if r["period"] == "2022-23")
    assert gap["value"] is None and gap["gap"] is True
    line = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "line")
    assert line["mark"]["invalid"] == "break-paths-show-domains"
    assert "Withheld to protect small numbers: 2022-23." in curve_alt(CURVE)


def test_the_interval_band_and_low_reliability_are_drawn_and_said() -> None:
    spec = curve_spec(CURVE)
    assert any(layer["mark"]["type"] == "area" for layer in spec["layer"])
    alt = curve_alt(CURVE)
    assert "95% interval" in alt and "Low reliability: 2024-25." in alt
    assert "Target 60.0% by 2025-26." in alt and "Higher is better." in alt
    no_dp = Curve("x", "percent", "decrease", "Year", (CurvePoint("2020", 1.0, status="free"),))
    assert not any(layer["mark"]["type"] == "area" for layer in curve_spec(no_dp)["layer"])
    assert "Lower is better." in curve_alt(no_dp)


def test_a_withheld_bar_is_labelled_not_drawn() -> None:
    bars = [Bar("Ashland", 40.0), Bar("Bayview", None, status="suppressed"), Bar("Central", 5.0)]
    spec = bars_spec("t", "percent", bars)
    values = (
        spec["layer"][0]["data"]["values"] if "data" in spec["layer"][0] else spec["data"]["values"]
    )
    assert [v["note"] for v in values] == ["", "withheld", ""]
    assert values[1]["value"] is None


def test_the_svg_is_rendered_once_and_named() -> None:
    cache = ChartCache()
    first = cache.curve(CURVE)
    assert first.svg.startswith('<svg role="img" aria-label="Kindergarten readiness rate')
    assert "http://" not in first.svg.split(">", 1)[1].replace("http://www.w3.org", "")
    assert cache.curve(CURVE).svg is first.svg


def test_values_are_formatted_for_people() -> None:
    assert format_value(None, "percent") == "—"
    assert format_value(48.94, "percent") == "48.9%"
    assert format_value(12345.0, "count") == "12,345"
    assert format_value(3.21, "rate_per_1000") == "3.2"
