"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no script.

Nothing in the page refers to anything outside it (no font, stylesheet, image or script), so
it opens the same from a mail attachment, a file share or an air-gapped machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from html import escape
from typing import Final

from etl.report.charts import Figure, button_label, intent_label
from etl.report.model import ReportData, ratio

DASH: Final = "—"


def render_page(data: ReportData, figures: Sequence[Figure]) -> str:
    """The whole page for `data`, with the rendered `figures` placed in their sections."""
    charts = {f.key: f for f in figures}
    title = f"Conversation report {data.start.isoformat()} to {_last_day(data).isoformat()}"
    body = "\n".join(
        [
            _header(data),
            _kpis(data),
            _daily(data, charts),
            _intents(data, charts),
            _buttons(data, charts),
            _pipeline(data, charts),
            "<footer>Made by <code>etl report</code> from the warehouse's metric views. "
            "Charts: Vega-Lite rendered to SVG; this file loads nothing from the network.</footer>",
        ]
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f'<body>\n<main class="report">\n{body}\n</main>\n</body>\n</html>\n'
    )


# -- formatting ------------------------------------------------------------------------------


def count(value: int) -> str:
    return f"{value:,}"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f} %"


def decimal(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def duration(seconds: float | None) -> str:
    """3 d 4 h, 2 h 5 min, 4 min 12 s or 8.5 s."""
    if seconds is None:
        return DASH
    sign, seconds = ("−", -seconds) if seconds < 0 else ("", seconds)
    if seconds < 60:
        return f"{sign}{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{sign}{days} d {hours} h"
    if hours:
        return f"{sign}{hours} h {minutes} min"
    return f"{sign}{minutes} min {secs} s"


def _day(value: date) -> str:
    return f"{value:%a} {value.day} {value:%b %Y}"


def _last_day(data: ReportData) -> date:
    return data.end - timedelta(days=1)


# -- building blocks -------------------------------------------------------------------------


_NUM: Final = ' class="num"'


def _cell(text: str, value: object = None, *, numeric: bool = True) -> str:
    attrs = _NUM if numeric else ""
    if value is not None:
        attrs += f' data-value="{escape(str(value))}"'
    return f"<td{attrs}>{escape(text)}</td>"


def _table(
    table_id: str,
    caption: str,
    headers: Sequence[tuple[str, bool]],
    rows: Iterable[str],
    foot: str = "",
) -> str:
    head = "".join(
        f'<th scope="col"{_NUM if numeric else ""}>{escape(h)}</th>' for h, numeric in headers
    )
    tfoot = f"<tfoot>{foot}</tfoot>" if foot else ""
    return (
        f'<table id="{table_id}"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>{tfoot}</table>"
    )


def _figure(figure: Figure | None) -> str:
    if figure is None:
        return ""
    svg = figure.svg.replace("<svg ", f'<svg role="img" aria-label="{escape(figure.title)}" ', 1)
    return f'<figure class="chart" id="chart-{figure.key}">{svg}</figure>'


def _empty(message: str) -> str:
    return f'<p class="empty">{escape(message)}</p>'


def _section(section_id: str, heading: str, intro: str, *parts: str) -> str:
    lead = f'<p class="intro">{intro}</p>' if intro else ""
    return f'<section id="{section_id}"><h2>{escape(heading)}</h2>{lead}{"".join(parts)}</section>'


def _scope(data: ReportData) -> str:
    env = f"environment {data.environment}" if data.environment else "all environments"
    return f"{_day(data.start)} to {_day(_last_day(data))} ({data.timezone}, {env})"


# -- sections --------------------------------------------------------------------------------


def _header(data: ReportData) -> str:
    days = (data.end - data.start).days
    meta = [
        ("Range", f"{data.start.isoformat()} to {data.end.isoformat()} (end exclusive)"),
        ("Time zone", data.timezone),
        ("Environment", data.environment or "all"),
        ("Generated", f"{data.generated_at:%Y-%m-%d %H:%M %Z}"),
        ("Warehouse", data.warehouse),
    ]
    items = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in meta)
    banner = (
        ""
        if data.has_conversations
        else _empty(f"No data for this range: no conversations from {_scope(data)}.")
    )
    return (
        "<header>"
        '<p class="kicker">Conversation report</p>'
        f"<h1>{escape(_day(data.start))} – {escape(_day(_last_day(data)))}</h1>"
        f'<p class="sub">{days} local day{"s" if days != 1 else ""} in {escape(data.timezone)}</p>'
        f'<dl class="meta">{items}</dl>{banner}</header>'
    )


def _kpis(data: ReportData) -> str:
    totals = data.totals
    lags = [w.lag.total_seconds() for w in data.watermarks]
    cards = [
        ("Conversations", count(totals.conversations), f"{count(totals.engaged)} engaged"),
        ("Containment", percent(totals.containment_rate), "contained ÷ engaged"),
        ("Handover", percent(totals.handover_rate), "handed over ÷ conversations"),
        ("Not understood", percent(totals.not_understood_rate), "of questions"),
        (
            "Click-through",
            percent(data.button_totals.click_through_rate),
            f"{count(data.button_totals.clicked)} of {count(data.button_totals.shown)} shown",
        ),
        ("Messages / conv.", decimal(totals.avg_messages), f"{count(totals.messages)} messages"),
        ("Average duration", duration(data.avg_duration_seconds), "per conversation"),
        (
            "Watermark lag",
            duration(max(lags)) if lags else DASH,
            "behind now" if lags else "no watermark yet",
        ),
    ]
    items = "".join(
        f'<div class="kpi"><p class="label">{escape(label)}</p>'
        f'<p class="value">{escape(value)}</p><p class="note">{escape(note)}</p></div>'
        for label, value, note in cards
    )
    return f'<section class="kpis" aria-label="Totals over the range">{items}</section>'


def _daily(data: ReportData, charts: dict[str, Figure]) -> str:
    heading = "Daily activity"
    if not data.has_conversations:
        return _section("daily", heading, "", _empty(f"No conversations from {_scope(data)}."))
    totals = data.totals
    summary = _table(
        "totals-table",
        "Whole range",
        [("Measure", False), ("Value", True)],
        [
            f"<tr><th scope=row>{escape(k)}</th>{_cell(v)}</tr>"
            for k, v in [
                ("Conversations", count(totals.conversations)),
                ("Engaged (asked a question)", count(totals.engaged)),
                ("Contained", count(totals.contained)),
                ("Handed over", count(totals.handed_over)),
                ("Containment rate", percent(totals.containment_rate)),
                ("Handover rate", percent(totals.handover_rate)),
                ("Questions", count(totals.questions)),
                ("Not understood", count(totals.not_understood)),
                ("Not-understood rate", percent(totals.not_understood_rate)),
                ("Messages per conversation", decimal(totals.avg_messages)),
                ("Average duration", duration(data.avg_duration_seconds)),
            ]
        ],
    )
    headers = [
        ("Local date", False),
        ("Conversations", True),
        ("Engaged", True),
        ("Contained", True),
        ("Handed over", True),
        ("Containment", True),
        ("Handover", True),
        ("Questions", True),
        ("Not understood", True),
        ("Not-understood rate", True),
        ("Messages / conv.", True),
    ]
    rows = [
        f'<tr data-date="{d.local_date.isoformat()}">'
        f'<th scope="row">{escape(f"{d.local_date:%a} {d.local_date.isoformat()}")}</th>'
        + _cell(count(d.conversations), d.conversations)
        + _cell(count(d.engaged), d.engaged)
        + _cell(count(d.contained), d.contained)
        + _cell(count(d.handed_over), d.handed_over)
        + _cell(percent(d.containment_rate), _raw(d.containment_rate))
        + _cell(percent(d.handover_rate), _raw(d.handover_rate))
        + _cell(count(d.questions), d.questions)
        + _cell(count(d.not_understood), d.not_understood)
        + _cell(percent(d.not_understood_rate), _raw(d.not_understood_rate))
        + _cell(decimal(d.avg_messages), _raw(d.avg_messages))
        + "</tr>"
        for d in data.days
    ]
    daily = _table("daily-table", f"Daily figures, local dates in {data.timezone}", headers, rows)
    return _section(
        "daily",
        heading,
        "Rates over the range come from the summed counts, not from averaging daily rates.",
        '<div class="grid">',
        _figure(charts.get("conversations")),
        _figure(charts.get("rates")),
        _figure(charts.get("not-understood")),
        f'<div class="side">{summary}</div>',
        "</div>",
        f'<div class="wide">{daily}</div>',
    )


def _raw(value: float | None) -> str:
    return "" if value is None else repr(value)


def _intents(data: ReportData, charts: dict[str, Figure]) -> str:
    heading = "Top intents"
    if not data.intents:
        return _section("intents", heading, "", _empty(f"No questions from {_scope(data)}."))
    rows = [
        f"<tr><td class=rank>{n}</td>{_cell(intent_label(i), numeric=False)}"
        f"{_cell(count(i.questions), i.questions)}"
        f"{_cell(percent(ratio(i.questions, data.intent_questions)))}</tr>"
        for n, i in enumerate(data.intents, start=1)
    ]
    others = data.intent_questions - sum(i.questions for i in data.intents)
    rest = data.intent_count - len(data.intents)
    foot = ""
    if rest:
        foot += (
            f"<tr><td></td>{_cell(f'{count(rest)} other intents', numeric=False)}"
            f"{_cell(count(others), others)}"
            f"{_cell(percent(ratio(others, data.intent_questions)))}</tr>"
        )
    foot += (
        f"<tr><td></td>{_cell('All intents', numeric=False)}"
        f"{_cell(count(data.intent_questions), data.intent_questions)}{_cell('100.0 %')}</tr>"
    )
    table = _table(
        "intents-table",
        f"Questions per intent ({count(data.intent_count)} intents)",
        [("#", False), ("Intent", False), ("Questions", True), ("Share", True)],
        rows,
        foot,
    )
    return _section(
        "intents",
        heading,
        "",
        f'<div class="pair">{_figure(charts.get("intents"))}<div class="side">{table}</div></div>',
    )


def _buttons(data: ReportData, charts: dict[str, Figure]) -> str:
    heading = "Buttons"
    if not data.buttons:
        return _section("buttons", heading, "", _empty(f"No buttons shown from {_scope(data)}."))
    rows = [
        f"<tr>{_cell(button_label(b), numeric=False)}{_cell(count(b.shown), b.shown)}"
        f"{_cell(count(b.clicked), b.clicked)}"
        f"{_cell(percent(b.click_through_rate), _raw(b.click_through_rate))}</tr>"
        for b in data.buttons
    ]
    t = data.button_totals
    foot = (
        f"<tr>{_cell(f'All {count(data.button_count)} buttons', numeric=False)}"
        f"{_cell(count(t.shown), t.shown)}{_cell(count(t.clicked), t.clicked)}"
        f"{_cell(percent(t.click_through_rate), _raw(t.click_through_rate))}</tr>"
    )
    table = _table(
        "buttons-table",
        "Times shown and clicked over the range",
        [("Button", False), ("Shown", True), ("Clicked", True), ("Click-through", True)],
        rows,
        foot,
    )
    return _section(
        "buttons",
        heading,
        "",
        f'<div class="pair">{_figure(charts.get("buttons"))}<div class="side">{table}</div></div>',
    )


def _pipeline(data: ReportData, charts: dict[str, Figure]) -> str:
    heading = "Pipeline health"
    days = len(data.load_days)
    intro = (
        f"The loads of the last {'day' if days == 1 else f'{days} days'} with runs (UTC "
        "dates), as of when the report was generated, whatever data they loaded: this part "
        "is not limited to the report's range."
    )
    marks = _watermarks(data)
    if not data.load_days:
        return _section("pipeline", heading, "", _empty("No load has run yet."), marks)
    rows = [
        f'<tr><th scope="row">{escape(d.load_date.isoformat())}</th>'
        f"{_cell(count(d.windows), d.windows)}{_cell(count(d.failed_windows), d.failed_windows)}"
        f"{_cell(count(d.conversations), d.conversations)}{_cell(decimal(d.seconds), d.seconds)}"
        f"{_cell(decimal(d.throughput), _raw(d.throughput))}</tr>"
        for d in data.load_days
    ]
    t = data.load_totals
    foot = (
        ""
        if t is None
        else f'<tr><th scope="row">All</th>{_cell(count(t.windows))}'
        f"{_cell(count(t.failed_windows))}{_cell(count(t.conversations))}"
        f"{_cell(decimal(t.seconds))}{_cell(decimal(t.throughput))}</tr>"
    )
    table = _table(
        "pipeline-table",
        "Windows per load date (UTC)",
        [
            ("Load date", False),
            ("Windows", True),
            ("Failed", True),
            ("Conversations", True),
            ("Seconds", True),
            ("Conv./s", True),
        ],
        rows,
        foot,
    )
    return _section(
        "pipeline",
        heading,
        escape(intro),
        '<div class="grid">',
        _figure(charts.get("windows")),
        _figure(charts.get("throughput")),
        "</div>",
        f'<div class="grid"><div class="side">{table}</div><div class="side">{marks}</div></div>',
    )


def _watermarks(data: ReportData) -> str:
    if not data.watermarks:
        return _empty("No watermark yet: no window has been loaded.")
    rows = [
        f"<tr>{_cell(w.site or DASH, numeric=False)}{_cell(w.environment or 'any', numeric=False)}"
        f"{_cell(f'{w.watermark:%Y-%m-%d %H:%M} UTC', w.watermark.isoformat(), numeric=False)}"
        f"{_cell(duration(w.lag.total_seconds()), w.lag.total_seconds())}</tr>"
        for w in data.watermarks
    ]
    return _table(
        "watermark-table",
        "Watermarks: everything before is loaded",
        [("Site", False), ("Environment", False), ("Watermark", False), ("Lag", True)],
        rows,
    )


CSS: Final = """
:root {
  --ink: #1f2937; --muted: #4b5563; --faint: #6b7280; --line: #e5e7eb; --paper: #ffffff;
  --wash: #f3f4f6; --accent: #2563eb; --warn: #b45309;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Liberation Sans", "DejaVu Sans", sans-serif;
  color: var(--ink); background: var(--wash); line-height: 1.45; font-size: 15px;
}
* { box-sizing: border-box; }
body { margin: 0; }
.report { max-width: 1240px; margin: 0 auto; padding: 28px 24px 40px; }
header, section { background: var(--paper); border: 1px solid var(--line); border-radius: 10px;
  padding: 20px 24px; margin-bottom: 18px; }
.kicker { margin: 0; text-transform: uppercase; letter-spacing: .08em; font-size: 12px;
  font-weight: 600; color: var(--accent); }
h1 { margin: 4px 0 2px; font-size: 26px; font-weight: 650; letter-spacing: -.01em; }
h2 { margin: 0 0 4px; font-size: 18px; font-weight: 650; }
.sub, .intro { margin: 0 0 12px; color: var(--muted); }
.meta { display: flex; flex-wrap: wrap; gap: 8px 28px; margin: 14px 0 0; }
.meta div { min-width: 0; }
.meta dt { font-size: 12px; color: var(--faint); text-transform: uppercase; letter-spacing: .05em; }
.meta dd { margin: 0; font-weight: 500; overflow-wrap: anywhere; }
.kpis { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 12px;
  padding: 16px; }
.kpi { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.kpi p { margin: 0; }
.kpi .label { font-size: 12px; color: var(--faint); text-transform: uppercase;
  letter-spacing: .04em; }
.kpi .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.kpi .note { font-size: 12.5px; color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 18px;
  align-items: start; margin-top: 8px; }
.pair { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 18px;
  align-items: start; margin-top: 8px; }
@media (max-width: 900px) {
  .pair, .grid { grid-template-columns: minmax(0, 1fr); }
  .kpis { grid-template-columns: repeat(2, minmax(0, 1fr)); }
}
figure.chart { margin: 0; min-width: 0; }
figure.chart svg { display: block; max-width: 100%; height: auto; }
.wide { margin-top: 18px; overflow-x: auto; }
.side { min-width: 0; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px;
  font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 0 0 6px; color: var(--ink); }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
thead th { font-size: 12px; font-weight: 600; color: var(--muted); border-bottom: 2px solid #d1d5db;
  vertical-align: bottom; }
tbody th { font-weight: 500; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f9fafb; }
tfoot td, tfoot th { font-weight: 600; border-top: 2px solid #d1d5db; border-bottom: 0; }
.num { text-align: right; white-space: nowrap; }
thead th.num { white-space: normal; }
.rank { color: var(--faint); width: 2em; }
.empty { margin: 12px 0 0; padding: 12px 16px; border-radius: 8px; background: #fffbeb;
  border: 1px solid #fde68a; color: var(--warn); font-weight: 500; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace;
  font-size: .92em; }
footer { color: var(--faint); font-size: 12.5px; text-align: center; margin-top: 8px; }
@media print { :root { background: #fff; } header, section { break-inside: avoid; } }
"""
