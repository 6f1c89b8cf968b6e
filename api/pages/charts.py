"""Charts for the pages: Vega-Lite specifications built with Altair, rendered to SVG on the
server by vl-convert (no JavaScript, no browser, no network), with a text alternative.

A chart depends only on published values (a series or a release's cells), which never change
once published, so a rendered SVG is kept by the content of its specification: the second page
view costs a dictionary lookup, not a render (vl-convert takes about 70 ms a chart).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import vl_convert as vlc

from disclosure.vocabulary import CellStatus, Unit

# Colours with at least 3:1 contrast against white (WCAG 2.1 non-text contrast, 1.4.11), told
# apart by shape and dash as well as by hue.
ACTUAL = "#1f4e9a"
FORECAST = "#5c5c5c"
TARGET = "#1a7240"
BASELINE = "#9a4d00"
BAND = "#7a9fd6"
WITHHELD = "#8a1538"
HEIGHT = 260

WITHHELD_STATUSES = frozenset(
    {CellStatus.SUPPRESSED, CellStatus.PRIMARY, CellStatus.SECONDARY, CellStatus.EMPTY}
)
UNIT_LABELS = {
    Unit.PERCENT: "Percent",
    Unit.RATE_PER_1000: "Rate per 1,000",
    Unit.COUNT: "Count",
    Unit.MEAN: "Mean",
}
SDMX_STATUS = {
    CellStatus.SUPPRESSED: "C (confidential)",
    CellStatus.PRIMARY: "C (confidential)",
    CellStatus.SECONDARY: "D (secondary confidential)",
    CellStatus.EMPTY: "M (missing)",
    CellStatus.STRUCTURAL_ZERO: "M (cannot exist)",
    CellStatus.DP: "E (estimated)",
    CellStatus.ROUNDED: "E (estimated)",
    CellStatus.LOW_RELIABILITY: "U (low reliability)",
    CellStatus.FREE: "A (normal)",
}


def withheld(status: str | None) -> bool:
    """Whether a cell of this status has no published value (a gap, never a zero)."""
    return status in WITHHELD_STATUSES


def format_value(value: float | None, unit: str) -> str:
    """A published value as people read it."""
    if value is None:
        return "—"
    if unit == Unit.COUNT:
        return f"{value:,.0f}"
    if unit == Unit.PERCENT:
        return f"{value:.1f}%"
    return f"{value:,.1f}"


@dataclass(frozen=True)
class CurvePoint:
    period: str
    value: float | None
    lower: float | None = None
    upper: float | None = None
    status: str | None = None


@dataclass(frozen=True)
class Curve:
    """What a turn-the-curve chart shows: the actual series, the baseline forecast, the
    indicator's baseline and target."""

    title: str
    unit: str
    direction: str
    period_label: str
    points: tuple[CurvePoint, ...]
    forecast: tuple[tuple[str, float], ...] = ()
    baseline: tuple[str, float] | None = None
    target: tuple[str, float] | None = None


@dataclass(frozen=True)
class Chart:
    svg: str
    alt: str


def curve_alt(curve: Curve) -> str:
    """The chart's text alternative: what a sighted reader takes from it."""
    unit = curve.unit
    shown = [p for p in curve.points if p.value is not None]
    parts = [f"{curve.title}, {curve.period_label.lower()} by {curve.period_label.lower()}."]
    if shown:
        first, last = shown[0], shown[-1]
        if first is last:
            parts.append(f"{first.period}: {format_value(first.value, unit)}.")
        else:
            parts.append(
                f"From {format_value(first.value, unit)} in {first.period} "
                f"to {format_value(last.value, unit)} in {last.period}."
            )
    else:
        parts.append("No value is published to you.")
    gaps = [p.period for p in curve.points if withheld(p.status)]
    if gaps:
        parts.append(f"Withheld to protect small numbers: {', '.join(gaps)}.")
    if any(p.lower is not None for p in curve.points):
        parts.append("Values are differentially private; the band is their 95% interval.")
    weak = [p.period for p in curve.points if p.status == CellStatus.LOW_RELIABILITY]
    if weak:
        parts.append(f"Low reliability: {', '.join(weak)}.")
    if curve.baseline:
        parts.append(f"Baseline {format_value(curve.baseline[1], unit)} in {curve.baseline[0]}.")
    if curve.target:
        parts.append(f"Target {format_value(curve.target[1], unit)} by {curve.target[0]}.")
    if curve.forecast:
        end = curve.forecast[-1]
        parts.append(
            f"If nothing changes, the trend reaches {format_value(end[1], unit)} by {end[0]}."
        )
    good = "higher" if curve.direction == "increase" else "lower"
    parts.append(f"{good.capitalize()} is better.")
    return " ".join(parts)


def _rows(curve: Curve) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in curve.points:
        rows.append(
            {
                "period": p.period,
                "series": "Actual",
                "value": None if withheld(p.status) else p.value,
                "lower": p.lower,
                "upper": p.upper,
                "weak": p.status == CellStatus.LOW_RELIABILITY,
                "gap": withheld(p.status),
            }
        )
    if curve.forecast:
        last = next((p for p in reversed(curve.points) if p.value is not None), None)
        if last is not None and last.period not in {f[0] for f in curve.forecast}:
            rows.append({"period": last.period, "series": "Forecast", "value": last.value})
        rows.extend({"period": p, "series": "Forecast", "value": v} for p, v in curve.forecast)
    return rows


def _periods(curve: Curve) -> list[str]:
    seen = [p.period for p in curve.points]
    seen += [p for p, _ in curve.forecast]
    for ref in (curve.baseline, curve.target):
        if ref is not None:
            seen.append(ref[0])
    return sorted(set(seen))


def _data(values: list[dict[str, Any]]) -> alt.Data:
    return alt.Data(values=values)  # type: ignore[no-untyped-call]


def curve_spec(curve: Curve) -> dict[str, Any]:
    """The Vega-Lite specification of a turn-the-curve chart."""
    periods = _periods(curve)
    x = alt.X(
        "period:O",
        title=curve.period_label,
        sort=periods,
        scale=alt.Scale(domain=periods),
        axis=alt.Axis(labelAngle=0),
    )
    y_title = UNIT_LABELS.get(Unit(curve.unit), curve.unit) if curve.unit in set(Unit) else ""
    data = _data(_rows(curve))
    # The curve's shape is what is read: the axis starts near the values, not at zero.
    y_scale = alt.Scale(zero=False, nice=True)
    base = alt.Chart(data).encode(x=x)
    banded = any(p.lower is not None and p.upper is not None for p in curve.points)
    series_scale = alt.Scale(
        domain=["Actual", "Forecast", "Baseline", "Target"] + (["95% interval"] if banded else []),
        range=[ACTUAL, FORECAST, BASELINE, TARGET] + ([BAND] if banded else []),
    )
    layers: list[alt.Chart] = []
    legend = alt.Legend(title=None, orient="bottom", symbolOpacity=1)
    color = alt.Color("series:N", scale=series_scale, legend=legend)
    if banded:
        layers.append(
            base.transform_filter("datum.series == 'Actual' && isValid(datum.lower)")
            .transform_calculate(band="'95% interval'")
            .mark_area(opacity=0.35)
            .encode(
                y=alt.Y("lower:Q", title=y_title, scale=y_scale),
                y2="upper:Q",
                color=alt.Color("band:N", scale=series_scale, legend=legend),
            )
        )
    layers.append(
        base.transform_filter("datum.series == 'Actual'")
        # A withheld value breaks the line: it is a gap, never a zero.
        .mark_line(strokeWidth=2.5, invalid="break-paths-show-domains")
        .encode(y=alt.Y("value:Q", title=y_title, scale=y_scale), color=color)
    )
    layers.append(
        base.transform_filter("datum.series == 'Forecast'")
        .mark_line(strokeDash=[6, 4], strokeWidth=2)
        .encode(y="value:Q", color=color)
    )
    layers.append(
        base.transform_filter("datum.series == 'Actual' && isValid(datum.value)")
        .mark_point(size=60, filled=True)
        .encode(
            y="value:Q",
            color=color,
            shape=alt.Shape(
                "weak:N",
                scale=alt.Scale(domain=[False, True], range=["circle", "triangle-up"]),
                legend=alt.Legend(
                    title=None, orient="bottom", values=[True], labelExpr="'Low reliability'"
                )
                if any(p.status == CellStatus.LOW_RELIABILITY for p in curve.points)
                else None,
            ),
        )
    )
    refs: list[dict[str, Any]] = []
    if curve.baseline:
        refs.append({"period": curve.baseline[0], "series": "Baseline", "value": curve.baseline[1]})
    if curve.target:
        refs.append({"period": curve.target[0], "series": "Target", "value": curve.target[1]})
    if refs:
        ref_chart = alt.Chart(_data(refs)).encode(x=x)
        layers.append(
            ref_chart.mark_point(size=140, shape="diamond", filled=True).encode(
                y="value:Q", color=color
            )
        )
        layers.append(
            ref_chart.mark_text(dy=-12, fontSize=11).encode(
                y="value:Q",
                text=alt.Text("series:N"),
                color=alt.Color("series:N", scale=series_scale, legend=None),
            )
        )
    gaps = [p.period for p in curve.points if withheld(p.status)]
    if gaps:
        layers.append(
            alt.Chart(_data([{"period": g, "label": "withheld"} for g in gaps]))
            .mark_text(color=WITHHELD, fontSize=11, baseline="bottom", dy=-4)
            .encode(x=x, y=alt.value(HEIGHT), text="label:N")
        )
    chart = alt.layer(*layers).properties(width=560, height=HEIGHT, description=curve_alt(curve))
    spec = (
        chart.configure_view(stroke=None)
        .configure_axis(labelFontSize=12, titleFontSize=12, labelColor="#222", titleColor="#222")
        .configure_legend(labelFontSize=12, labelColor="#222")
        .to_dict(validate=False)
    )
    spec["config"]["aria"] = False
    return dict(spec)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    lower: float | None = None
    upper: float | None = None
    status: str | None = None


def bars_alt(title: str, unit: str, bars: Sequence[Bar]) -> str:
    """The text alternative of a breakdown: its extremes and what is withheld."""
    shown = [b for b in bars if b.value is not None and not withheld(b.status)]
    parts = [f"{title}."]
    if shown:
        hi = max(shown, key=lambda b: b.value or 0.0)
        lo = min(shown, key=lambda b: b.value or 0.0)
        parts.append(
            f"Highest: {hi.label}, {format_value(hi.value, unit)}. "
            f"Lowest: {lo.label}, {format_value(lo.value, unit)}."
        )
    n = sum(1 for b in bars if withheld(b.status))
    if n:
        parts.append(f"{n} of {len(bars)} withheld to protect small numbers.")
    return " ".join(parts)


def bars_spec(title: str, unit: str, bars: Sequence[Bar]) -> dict[str, Any]:
    """A horizontal bar chart of one period by one dimension; withheld bars are left empty and
    labelled, never drawn as zero."""
    rows = [
        {
            "label": b.label,
            "value": None if withheld(b.status) else b.value,
            "lower": b.lower,
            "upper": b.upper,
            "note": "withheld" if withheld(b.status) else "",
        }
        for b in bars
    ]
    y = alt.Y("label:N", title=None, sort=[b.label for b in bars])
    base = alt.Chart(_data(rows)).encode(y=y)
    x_title = UNIT_LABELS.get(Unit(unit), unit) if unit in set(Unit) else ""
    layers: list[alt.Chart] = [
        base.transform_filter("isValid(datum.value)")
        .mark_bar(color=ACTUAL)
        .encode(x=alt.X("value:Q", title=x_title))
    ]
    if any(b.lower is not None for b in bars):
        layers.append(
            base.transform_filter("isValid(datum.lower)")
            .mark_rule(color="#111", strokeWidth=1.5)
            .encode(x="lower:Q", x2="upper:Q")
        )
    layers.append(
        base.transform_filter("datum.note != ''")
        .mark_text(color=WITHHELD, align="left", dx=4, fontSize=11)
        .encode(x=alt.value(0), text="note:N")
    )
    chart = alt.layer(*layers).properties(
        width=480, height=alt.Step(16), description=bars_alt(title, unit, bars)
    )
    spec = (
        chart.configure_view(stroke=None)
        .configure_axis(
            labelFontSize=11, titleFontSize=12, labelColor="#222", titleColor="#222", labelLimit=220
        )
        .to_dict(validate=False)
    )
    spec["config"]["aria"] = False
    return dict(spec)


_SVG_OPEN = re.compile(r"^<svg\b")


# Vega marks its mark containers for assistive technology even with ARIA off in the config.
_INNER_ARIA = re.compile(r'\s(?:role|aria-roledescription|aria-label)="[^"]*"')


def _accessible(svg: str, label: str) -> str:
    # The chart is one image with one name (its text alternative); its data are in the table
    # beside it, so nothing inside it is announced on its own.
    escaped = (
        label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )
    inner = _INNER_ARIA.sub("", svg)
    return _SVG_OPEN.sub(f'<svg role="img" aria-label="{escaped}" focusable="false"', inner, 1)


class ChartCache:
    """Rendered SVGs by the hash of their specification, the most recently used kept."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._svgs: OrderedDict[Hashable, str] = OrderedDict()
        self._lock = threading.Lock()
        # vl-convert is not documented as safe to call from several threads at once.
        self._render_lock = threading.Lock()

    def render(self, key: Hashable, spec: Callable[[], Mapping[str, Any]], alt_text: str) -> Chart:
        """The chart of ``key`` (the values it shows: a :class:`Curve`, or a breakdown's
        bars), its specification built by ``spec`` and rendered only the first time: building a
        specification with Altair costs more than a whole page served from the cache."""
        with self._lock:
            svg = self._svgs.get(key)
            if svg is not None:
                self._svgs.move_to_end(key)
                return Chart(svg, alt_text)
        built = dict(spec())
        with self._render_lock:
            svg = _accessible(vlc.vegalite_to_svg(built), alt_text)
        with self._lock:
            self._svgs[key] = svg
            while len(self._svgs) > self._size:
                self._svgs.popitem(last=False)
        return Chart(svg, alt_text)

    def warm(self) -> None:
        """Start vl-convert's engine (about a second, once per process) before a page needs it."""
        curve = Curve("warm", Unit.PERCENT, "increase", "Period", (CurvePoint("1", 1.0),))
        self.render(("warm",), lambda: curve_spec(curve), "warm")

    def curve(self, curve: Curve) -> Chart:
        """A turn-the-curve chart."""
        return self.render(("curve", curve), lambda: curve_spec(curve), curve_alt(curve))

    def bars(self, title: str, unit: str, bars: Sequence[Bar]) -> Chart:
        """A breakdown's bar chart."""
        shown = tuple(bars)
        return self.render(
            ("bars", title, unit, shown),
            lambda: bars_spec(title, unit, shown),
            bars_alt(title, unit, shown),
        )
