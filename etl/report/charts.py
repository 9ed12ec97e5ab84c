"""The report's charts: Vega-Lite specs built with altair, rendered offline to SVG by vl-convert.

Each chart carries its data inline, and the renderer may fetch nothing (no base URL is
allowed), so the SVG is the whole chart: no script, font or request is needed to show it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import altair as alt
import vl_convert

from etl.report.model import ButtonCount, DayCounts, IntentCount, LoadDay, ReportData

# Metric-compatible faces: vl-convert lays text out with Liberation Sans (bundled), and a
# browser draws it with Arial, Liberation Sans or Helvetica at the same widths, so that no
# label the layout made room for is clipped or overlaps its neighbour.
FONT: Final = 'Arial, "Liberation Sans", Helvetica, sans-serif'

INK: Final = "#1f2937"
MUTED: Final = "#4b5563"
GRID: Final = "#e5e7eb"
BLUE: Final = "#2563eb"
GREEN: Final = "#15803d"
ORANGE: Final = "#d97706"
RED: Final = "#dc2626"
VIOLET: Final = "#7c3aed"
TEAL: Final = "#0f766e"
SLATE: Final = "#64748b"

WIDTH: Final = 500
HEIGHT: Final = 230
LABEL_LIMIT: Final = 220  # px of a bar chart's category label before it is cut with "…"

_CONFIG: Final[dict[str, Any]] = {
    "font": FONT,
    "background": "white",
    "padding": {"left": 4, "right": 12, "top": 4, "bottom": 4},
    "view": {"stroke": None},
    "title": {
        "anchor": "start",
        "fontSize": 15,
        "fontWeight": 600,
        "color": INK,
        "subtitleFontSize": 12,
        "subtitleColor": MUTED,
        "offset": 12,
    },
    "axis": {
        "labelFontSize": 11,
        "titleFontSize": 12,
        "titleFontWeight": 500,
        "labelColor": MUTED,
        "titleColor": INK,
        "gridColor": GRID,
        "domainColor": "#9ca3af",
        "tickColor": "#9ca3af",
        "titlePadding": 8,
    },
    "legend": {
        "labelFontSize": 12,
        "labelColor": INK,
        "titleFontSize": 12,
        "orient": "top",
        "direction": "horizontal",
        "title": None,
        "symbolSize": 120,
        "labelLimit": 320,
    },
}


# Inlined SVG needs no namespace declarations: the HTML parser puts <svg> in the SVG namespace.
_NAMESPACES: Final = re.compile(r'\s+xmlns(?::xlink)?="[^"]*"')


@dataclass(frozen=True)
class Figure:
    """One rendered chart: its id in the page, its title and the SVG markup."""

    key: str
    title: str
    svg: str


def render(chart: alt.TopLevelMixin) -> str:
    """The chart as SVG markup, fit for inlining into an HTML page."""
    spec = chart.to_dict()
    svg = vl_convert.vegalite_to_svg(
        spec, vl_version=_vl_version(), config=_CONFIG, allowed_base_urls=[]
    )
    return _NAMESPACES.sub("", svg, count=2)


def _vl_version() -> str:
    """The Vega-Lite version altair writes specs for, as vl-convert names it ("v6_4")."""
    return "_".join(alt.SCHEMA_VERSION.split(".")[:2])


def figures(data: ReportData) -> list[Figure]:
    """Every chart the data has something to show for, rendered."""
    builders: list[tuple[str, str, Callable[[ReportData], alt.TopLevelMixin | None]]] = [
        ("conversations", "Conversations per day", conversations_chart),
        ("rates", "Containment and handover rates per day", rates_chart),
        ("not-understood", "Not-understood rate per day", not_understood_chart),
        ("intents", "Top intents", intents_chart),
        ("buttons", "Button click-through", buttons_chart),
        ("windows", "Windows run per day", windows_chart),
        ("throughput", "Load throughput", throughput_chart),
    ]
    out = []
    for key, title, build in builders:
        chart = build(data)
        if chart is not None:
            out.append(Figure(key, title, render(chart)))
    return out


def _inline(rows: list[Any]) -> alt.InlineData:
    return alt.InlineData(values=rows)


def _titled(chart: Any, title: alt.Title, width: int, height: int) -> alt.TopLevelMixin:
    """The chart with its title (and subtitle) and plot size in px."""
    done: alt.TopLevelMixin = chart.properties(title=title, width=width, height=height)
    return done


def _count_axis(counts: Iterable[int]) -> alt.Axis:
    """An axis of whole numbers. Up to a few, Vega would tick at halves (0.5, 1.5), each then
    labelled as the integer around it, twice: the ticks are the integers themselves."""
    top = max(counts, default=0)
    if top < 10:
        return alt.Axis(format=",d", values=list(range(top + 1)))
    return alt.Axis(format=",d")


def _date_axis(days: Sequence[date], title: str) -> alt.X:
    """One band per date of `days` (those without a value too), labelled in the middle.

    Dates are ISO text (`toDate` reads them as UTC midnight and `utcFormat` writes them back),
    so no time zone of the renderer's machine can move a bar to the neighbouring day.
    """
    when = "utcFormat(toDate(datum.value), '%a')"
    day = "utcFormat(toDate(datum.value), '%d %b')"
    axis = alt.Axis(
        # Up to two weeks, the weekday over each date (a label of two lines).
        labelExpr=f"[{when}, {day}]" if len(days) <= 14 else day,
        labelAngle=0,
        labelOverlap=True,
        labelPadding=4,
        grid=False,
        ticks=False,
    )
    scale = alt.Scale(domain=[d.isoformat() for d in days], paddingInner=0.2, paddingOuter=0.1)
    return alt.X("date:O", title=title, axis=axis, scale=scale)


def _points(days: int, color: str | None = None) -> alt.OverlayMarkDef | bool:
    """A dot on each day of a line while the days are few enough to tell apart."""
    if days > 31:
        return False
    if color is None:
        return alt.OverlayMarkDef(size=40, filled=True)
    return alt.OverlayMarkDef(size=40, filled=True, color=color)


def _bar_width(bars: int) -> float:
    """A day's bar in px: most of its band, but never a slab when there are few days."""
    return min(56.0, 0.78 * WIDTH / max(bars, 1))


def _local_dates(data: ReportData) -> list[date]:
    return [d.local_date for d in data.days]


def _load_dates(data: ReportData) -> list[date]:
    return [d.load_date for d in data.load_days]


def _day_rows(days: Sequence[DayCounts], **values: Callable[[DayCounts], Any]) -> list[Any]:
    return [
        {"date": day.local_date.isoformat(), **{k: f(day) for k, f in values.items()}}
        for day in days
    ]


def conversations_chart(data: ReportData) -> alt.TopLevelMixin | None:
    if not data.has_conversations:
        return None
    rows = _day_rows(data.days, conversations=lambda d: d.conversations)
    base = alt.Chart(_inline(rows)).encode(
        x=_date_axis(_local_dates(data), f"Local date ({data.timezone})")
    )
    bars = base.mark_bar(
        color=BLUE, width=_bar_width(len(rows)), cornerRadiusTopLeft=2, cornerRadiusTopRight=2
    ).encode(
        y=alt.Y(
            "conversations:Q",
            title="Conversations (count)",
            axis=_count_axis(d.conversations for d in data.days),
        )
    )
    layers: list[Any] = [bars]
    if len(rows) <= 14:  # the exact figure over each bar while there is room for it
        layers.append(
            base.mark_text(dy=-7, fontSize=11, color=INK).encode(
                y="conversations:Q", text=alt.Text("conversations:Q", format=",d")
            )
        )
    return _titled(
        alt.layer(*layers),
        alt.Title("Conversations per day", subtitle="Conversations started, by local date"),
        WIDTH,
        HEIGHT,
    )


def _rate_axis(title: str, *, full: bool) -> alt.Y:
    return alt.Y(
        "rate:Q",
        title=title,
        # A scale of a few percent needs the tenths, or its labels repeat ("1%, 1%, 2%").
        axis=alt.Axis(format=".0%" if full else ".1~%"),
        scale=alt.Scale(domain=[0, 1]) if full else alt.Scale(zero=True, nice=True),
    )


def rates_chart(data: ReportData) -> alt.TopLevelMixin | None:
    if not data.has_conversations:
        return None
    rows = [
        {"date": day.local_date.isoformat(), "series": name, "rate": rate}
        for day in data.days
        for name, rate in (
            ("Containment (contained ÷ engaged)", day.containment_rate),
            ("Handover (handed over ÷ all)", day.handover_rate),
        )
        if rate is not None
    ]
    color = alt.Color(
        "series:N",
        scale=alt.Scale(
            domain=["Containment (contained ÷ engaged)", "Handover (handed over ÷ all)"],
            range=[GREEN, ORANGE],
        ),
    )
    chart = (
        alt.Chart(_inline(rows))
        .mark_line(point=_points(len(data.days)), strokeWidth=2.5)
        .encode(
            x=_date_axis(_local_dates(data), f"Local date ({data.timezone})"),
            y=_rate_axis("Share of conversations (%)", full=True),
            color=color,
        )
    )
    return _titled(
        chart,
        alt.Title(
            "Containment and handover rates per day",
            subtitle="Containment: engaged conversations the bot resolved alone",
        ),
        WIDTH,
        HEIGHT,
    )


def not_understood_chart(data: ReportData) -> alt.TopLevelMixin | None:
    rows = [
        {"date": day.local_date.isoformat(), "rate": day.not_understood_rate}
        for day in data.days
        if day.not_understood_rate is not None
    ]
    if not rows:
        return None
    chart = (
        alt.Chart(_inline(rows))
        .mark_line(color=RED, point=_points(len(data.days), RED))
        .encode(
            x=_date_axis(_local_dates(data), f"Local date ({data.timezone})"),
            y=_rate_axis("Not-understood questions (%)", full=False),
        )
    )
    return _titled(
        chart,
        alt.Title(
            "Not-understood rate per day",
            subtitle="Questions the bot did not understand ÷ questions",
        ),
        WIDTH,
        HEIGHT,
    )


def _unique_labels(labels: Sequence[str], ids: Sequence[int | None]) -> list[str]:
    """Labels for a category axis: a label that occurs twice gets its id appended."""
    return [
        f"{label} (#{ident})" if labels.count(label) > 1 and ident is not None else label
        for label, ident in zip(labels, ids, strict=True)
    ]


def intent_label(intent: IntentCount) -> str:
    if intent.intent_id is None:
        return "(no intent)"
    return intent.title or f"Intent #{intent.intent_id}"


def button_label(button: ButtonCount) -> str:
    if button.button_id is None:
        return "(unknown button)"
    return button.text or f"Button #{button.button_id}"


def _bar_height(count: int) -> int:
    return max(80, 26 * count)


def intents_chart(data: ReportData) -> alt.TopLevelMixin | None:
    if not data.intents:
        return None
    labels = _unique_labels(
        [intent_label(i) for i in data.intents], [i.intent_id for i in data.intents]
    )
    rows = [
        {"intent": label, "questions": i.questions, "rank": n}
        for n, (label, i) in enumerate(zip(labels, data.intents, strict=True))
    ]
    base = alt.Chart(_inline(rows)).encode(
        y=alt.Y(
            "intent:N",
            title=None,
            sort=alt.EncodingSortField("rank", order="ascending"),
            axis=alt.Axis(labelLimit=LABEL_LIMIT, labelFontSize=12, labelColor=INK),
        ),
        x=alt.X(
            "questions:Q",
            title="Questions (count)",
            axis=_count_axis(i.questions for i in data.intents),
        ),
    )
    bars = base.mark_bar(color=VIOLET, cornerRadiusEnd=2)
    text = base.mark_text(align="left", dx=4, fontSize=11, color=INK).encode(
        text=alt.Text("questions:Q", format=",d")
    )
    return _titled(
        alt.layer(bars, text),
        alt.Title(
            f"Top {len(rows)} intents",
            subtitle="Questions whose predicted intent it was, over the range",
        ),
        WIDTH - LABEL_LIMIT + 60,
        _bar_height(len(rows)),
    )


def buttons_chart(data: ReportData) -> alt.TopLevelMixin | None:
    shown = [b for b in data.buttons if b.shown]
    if not shown:
        return None
    labels = _unique_labels([button_label(b) for b in shown], [b.button_id for b in shown])
    rows = [
        {"button": label, "ctr": b.click_through_rate, "rank": n}
        for n, (label, b) in enumerate(zip(labels, shown, strict=True))
    ]
    base = alt.Chart(_inline(rows)).encode(
        y=alt.Y(
            "button:N",
            title=None,
            sort=alt.EncodingSortField("rank", order="ascending"),
            axis=alt.Axis(labelLimit=LABEL_LIMIT, labelFontSize=12, labelColor=INK),
        ),
        x=alt.X(
            "ctr:Q",
            title="Click-through rate (% of times shown)",
            axis=alt.Axis(format=".1~%"),
            scale=alt.Scale(zero=True, nice=True),
        ),
    )
    bars = base.mark_bar(color=TEAL, cornerRadiusEnd=2)
    text = base.mark_text(align="left", dx=4, fontSize=11, color=INK).encode(
        text=alt.Text("ctr:Q", format=".1%")
    )
    return _titled(
        alt.layer(bars, text),
        alt.Title(
            "Button click-through",
            subtitle=f"The {len(rows)} most shown buttons: clicks ÷ times shown",
        ),
        WIDTH - LABEL_LIMIT + 60,
        _bar_height(len(rows)),
    )


def _load_rows(days: Sequence[LoadDay], **values: Callable[[LoadDay], Any]) -> list[Any]:
    return [
        {"date": day.load_date.isoformat(), **{k: f(day) for k, f in values.items()}}
        for day in days
    ]


def windows_chart(data: ReportData) -> alt.TopLevelMixin | None:
    if not data.load_days:
        return None
    rows = [
        {"date": day.load_date.isoformat(), "outcome": outcome, "windows": count}
        for day in data.load_days
        for outcome, count in (
            ("Not failed", day.windows - day.failed_windows),
            ("Failed", day.failed_windows),
        )
    ]
    chart = (
        alt.Chart(_inline(rows))
        .mark_bar(width=_bar_width(len(data.load_days)))
        .encode(
            x=_date_axis(_load_dates(data), "Load date (UTC)"),
            y=alt.Y(
                "sum(windows):Q",
                title="Windows (count)",
                axis=_count_axis(d.windows for d in data.load_days),
            ),
            color=alt.Color(
                "outcome:N", scale=alt.Scale(domain=["Not failed", "Failed"], range=[SLATE, RED])
            ),
            order=alt.Order("outcome:N", sort="descending"),
        )
    )
    return _titled(
        chart,
        alt.Title(
            "Windows run per day", subtitle="Export windows the pipeline ran, by outcome (UTC days)"
        ),
        WIDTH,
        HEIGHT - 40,
    )


def throughput_chart(data: ReportData) -> alt.TopLevelMixin | None:
    rows = [r for r in _load_rows(data.load_days, rate=lambda d: d.throughput) if r["rate"]]
    if not rows:
        return None
    chart = (
        alt.Chart(_inline(rows))
        .mark_bar(
            color=BLUE,
            width=_bar_width(len(data.load_days)),
            cornerRadiusTopLeft=2,
            cornerRadiusTopRight=2,
        )
        .encode(
            x=_date_axis(_load_dates(data), "Load date (UTC)"),
            y=alt.Y("rate:Q", title="Throughput (conversations/s)", axis=alt.Axis(format=",.0f")),
        )
    )
    return _titled(
        chart,
        alt.Title("Load throughput", subtitle="Conversations loaded ÷ seconds spent in windows"),
        WIDTH,
        HEIGHT - 40,
    )
