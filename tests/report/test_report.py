"""`etl report`: the HTML page, its figures against the metric views, and a real browser."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from etl.report import build_page
from etl.report.model import ButtonCount, DayCounts, IntentCount, LoadDay, ReportData, Watermark
from tests.conftest import IN_CI, TestWarehouse
from tests.pipeline.cli_helpers import Result, etl, write_config

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The simulator's week (tests/conftest.py: 2024-03-27, seven days, Europe/Oslo) is loaded
# whole; the report covers five days inside it, across the 2024-03-31 DST switch.
LOAD_FROM, LOAD_TO = "2024-03-27", "2024-04-03"
REPORT_FROM, REPORT_TO = "2024-03-28", "2024-04-02"
REPORT_DATES = [str(date(2024, 3, 28) + timedelta(days=n)) for n in range(5)]
COUNTS = {  # daily table column (data-value order) -> daily_metrics column
    "conversations": "conversations",
    "engaged": "engaged_conversations",
    "contained": "contained_conversations",
    "handed_over": "handed_over_conversations",
    "containment_rate": "containment_rate",
    "handover_rate": "handover_rate",
    "questions": "questions",
    "not_understood": "not_understood_questions",
    "not_understood_rate": "not_understood_rate",
    "avg_messages": "avg_messages",
}
RATES = {
    "containment_rate": ("contained", "engaged"),
    "handover_rate": ("handed_over", "conversations"),
    "not_understood_rate": ("not_understood", "questions"),
    "avg_messages": ("messages", "conversations"),
}


# -- reading the page ------------------------------------------------------------------------


@dataclass
class Svg:
    attrs: dict[str, str]
    elements: list[str] = field(default_factory=list)


@dataclass
class Page:
    svgs: list[Svg] = field(default_factory=list)
    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    # table id -> rows of (row attributes, [(cell attributes, cell text)])
    tables: dict[str, list[tuple[dict[str, str], list[tuple[dict[str, str], str]]]]] = field(
        default_factory=dict
    )
    text: str = ""


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._svg: Svg | None = None
        self._table: str | None = None
        self._section: str | None = None
        self._cell: tuple[dict[str, str], list[str]] | None = None
        self._in_style = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.page.tags.append((tag, values))
        if tag == "svg":
            assert self._svg is None, "an <svg> inside an <svg>"
            self._svg = Svg(values)
        elif self._svg is not None:
            self._svg.elements.append(tag)
        if tag == "style":
            self._in_style = True
        if tag == "table":
            self._table = values.get("id", "")
            self.page.tables[self._table] = []
        elif self._table is not None:
            if tag == "tr":
                self.page.tables[self._table].append((values, []))
            elif tag in ("td", "th"):
                self._cell = (values, [])
            elif tag in ("thead", "tfoot", "tbody"):
                self._section = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            assert self._svg is not None
            self.page.svgs.append(self._svg)
            self._svg = None
        elif tag == "style":
            self._in_style = False
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            attrs, parts = self._cell
            attrs = {**attrs, "_section": self._section or ""}
            self.page.tables[self._table][-1][1].append((attrs, "".join(parts).strip()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.page.styles.append(data)
            return
        if self._cell is not None:
            self._cell[1].append(data)
        self._text.append(data)

    def close(self) -> None:
        super().close()
        self.page.text = " ".join(" ".join(self._text).split())


def read_page(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.page


def body_rows(
    page: Page, table: str
) -> list[tuple[dict[str, str], list[tuple[dict[str, str], str]]]]:
    return [
        (attrs, cells)
        for attrs, cells in page.tables[table]
        if cells and all(c[0]["_section"] == "tbody" for c in cells)
    ]


EXTERNAL = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)


def assert_self_contained(html: str, page: Page) -> None:
    """Nothing the page would fetch: no script at all, no stylesheet link, and no src, href
    or CSS url() that leaves the file."""
    assert not [a for t, a in page.tags if t == "script"], "the report needs no <script>"
    for tag, attrs in page.tags:
        if tag == "link":
            assert "stylesheet" not in attrs.get("rel", "").lower(), attrs
        for name in ("src", "href", "xlink:href", "srcset", "poster", "data", "action"):
            if name in attrs:
                assert not EXTERNAL.match(attrs[name]), f"<{tag} {name}={attrs[name]!r}>"
                assert not attrs[name].strip().lower().startswith("http"), attrs
        assert "url(" not in attrs.get("style", "").lower(), attrs
    for css in page.styles:
        assert "url(" not in css.lower() and "@import" not in css.lower(), "CSS fetches"
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", html, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?\s*https?://", html, re.IGNORECASE)


def assert_charts(page: Page, at_least: int) -> None:
    assert len(page.svgs) >= at_least, f"{len(page.svgs)} charts"
    for svg in page.svgs:
        assert float(svg.attrs["width"]) > 0 and float(svg.attrs["height"]) > 0, svg.attrs
        drawn = [e for e in svg.elements if e in ("path", "rect", "line")]
        assert len(drawn) >= 5, f"chart {svg.attrs.get('aria-label')} draws nothing"
        assert "text" in svg.elements, "a chart without title or axis labels"


# -- the page builder alone ------------------------------------------------------------------

GENERATED = datetime(2024, 4, 2, 9, 30, tzinfo=UTC)


def test_page_for_an_empty_range_says_there_is_no_data() -> None:
    data = ReportData(
        start=date(2023, 1, 2),
        end=date(2023, 1, 9),
        timezone="Europe/Oslo",
        warehouse="postgresql+psycopg://etl:***@db:5432/dw",
        generated_at=GENERATED,
        days=[DayCounts(date(2023, 1, 2) + timedelta(days=n)) for n in range(7)],
    )
    html = build_page(data)
    page = read_page(html)
    assert "No data for this range" in page.text
    assert page.svgs == []
    assert "2023-01-02 to 2023-01-09 (end exclusive)" in page.text
    assert "Europe/Oslo" in page.text and "postgresql+psycopg://etl:***@db:5432/dw" in page.text
    assert "2024-04-02 09:30 UTC" in page.text
    assert "daily-table" not in page.tables
    assert_self_contained(html, page)


def hand_made() -> ReportData:
    start = date(2024, 3, 25)
    days = [
        DayCounts(start, 10, 8, 6, 2, 60, 20, 4),
        DayCounts(start + timedelta(days=1), 0),  # a day without conversations
        DayCounts(start + timedelta(days=2), 100, 40, 10, 30, 500, 80, 8),
    ]
    return ReportData(
        start=start,
        end=start + timedelta(days=3),
        timezone="Europe/Oslo",
        warehouse="sqlite:///dw.db",
        generated_at=GENERATED,
        days=days,
        avg_duration_seconds=95.5,
        intents=[IntentCount(7, "Opening hours", 50), IntentCount(3, None, 30)],
        intent_questions=100,
        intent_count=3,
        buttons=[ButtonCount(1, "Yes", 40, 10), ButtonCount(2, None, 20, 0)],
        button_totals=ButtonCount(None, None, 60, 10),
        button_count=2,
        load_days=[LoadDay(date(2024, 4, 1), 24, 1, 110, 11.0)],
        watermarks=[
            Watermark("k", "bot.example", None, GENERATED - timedelta(hours=3), timedelta(hours=3))
        ],
    )


def test_page_shows_every_chart_and_range_rates_from_summed_counts() -> None:
    html = build_page(hand_made())
    page = read_page(html)
    assert_self_contained(html, page)
    assert_charts(page, at_least=7)
    labels = [svg.attrs.get("aria-label") for svg in page.svgs]
    assert labels == [
        "Conversations per day",
        "Containment and handover rates per day",
        "Not-understood rate per day",
        "Top intents",
        "Button click-through",
        "Windows run per day",
        "Load throughput",
    ]
    # Over the range: contained 16 of 48 engaged (33.3 %), not the mean of 75 % and 25 %.
    totals = dict((cells[0][1], cells[1][1]) for _, cells in page.tables["totals-table"][1:])
    assert totals["Containment rate"] == "33.3 %"
    assert totals["Handover rate"] == "29.1 %"  # 32 of 110
    assert totals["Not-understood rate"] == "12.0 %"  # 12 of 100
    assert totals["Average duration"] == "1 min 36 s"
    rows = body_rows(page, "daily-table")
    assert [r[0]["data-date"] for r in rows] == ["2024-03-25", "2024-03-26", "2024-03-27"]
    empty_day = [text for _, text in rows[1][1]]
    assert empty_day[1] == "0" and empty_day[5] == "—"  # no rate without a denominator
    intents = [[t for _, t in cells] for _, cells in body_rows(page, "intents-table")]
    assert intents == [["1", "Opening hours", "50", "50.0 %"], ["2", "Intent #3", "30", "30.0 %"]]
    assert "1 other intents" in page.text
    buttons = [[t for _, t in cells] for _, cells in body_rows(page, "buttons-table")]
    assert buttons == [["Yes", "40", "10", "25.0 %"], ["Button #2", "20", "0", "0.0 %"]]
    assert "3 h 0 min" in page.text  # the watermark lag


def test_report_needs_the_renderer_and_says_how_to_install_it(
    sqlite_warehouse: TestWarehouse, tmp_path: Path
) -> None:
    blocked = (
        "import sys; sys.modules['altair'] = None; sys.modules['vl_convert'] = None\n"
        "from etl.cli import main; main(sys.argv[1:])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    env.update(sqlite_warehouse.env())
    out = tmp_path / "report.html"
    args = ["report", "--from", REPORT_FROM, "--to", REPORT_TO, "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", blocked, *args], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr
    assert "altair and vl-convert-python" in proc.stderr
    assert "pip install 'convo-etl[report]'" in proc.stderr
    assert not out.exists()


def test_report_refuses_bad_ranges_and_unmigrated_warehouses(
    sqlite_warehouse: TestWarehouse, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"

    def report(*args: str, config: Path | None = None) -> Result:
        return etl("report", "--out", str(out), *args, wh=sqlite_warehouse, config=config)

    backwards = report("--from", "2024-04-02", "--to", "2024-03-28")
    assert backwards.code == 2 and "is not before" in backwards.stderr
    instant = report("--from", "2024-03-28T06:00:00+01:00", "--to", "2024-04-02")
    assert instant.code == 2 and "is not a date" in instant.stderr

    unmigrated = report("--from", REPORT_FROM, "--to", REPORT_TO)
    assert unmigrated.code == 2, unmigrated.output
    assert "run `etl migrate`" in unmigrated.stderr  # to create it: the file is not there yet
    assert "Traceback" not in unmigrated.output

    oslo = write_config(tmp_path, pipeline={"timezone": "Europe/Oslo"})
    etl("migrate", wh=sqlite_warehouse, config=oslo, check=True)
    utc_dir = tmp_path / "utc"
    utc_dir.mkdir()
    utc = write_config(utc_dir, pipeline={"timezone": "Europe/Oslo"}, reporting={"timezone": "UTC"})
    other_zone = report("--from", REPORT_FROM, "--to", REPORT_TO, config=utc)
    assert other_zone.code == 2, other_zone.output
    assert "are for Europe/Oslo" in other_zone.stderr
    assert not out.exists()

    nowhere = etl(
        "report",
        *("--from", REPORT_FROM, "--to", REPORT_TO),
        *("--out", str(tmp_path / "missing" / "report.html")),
        wh=sqlite_warehouse,
        config=oslo,
    )
    assert nowhere.code == 2 and "cannot write the report" in nowhere.stderr


# -- end to end ------------------------------------------------------------------------------


def load_two_environments(wh: TestWarehouse, make_sim: Any, tmp_path: Path) -> Path:
    """The simulator's week, "live" (the API's default) and "test", in a migrated warehouse;
    the config (Europe/Oslo) for the report."""
    api = make_sim()
    config = write_config(tmp_path, pipeline={"timezone": "Europe/Oslo", "window": "1d"})
    etl("migrate", wh=wh, config=config, check=True)
    etl("backfill", "--from", LOAD_FROM, "--to", LOAD_TO, wh=wh, api=api, config=config, check=True)
    test_env = tmp_path / "test-environment"
    test_env.mkdir()
    test_config = write_config(
        test_env,
        pipeline={"timezone": "Europe/Oslo", "window": "1d"},
        **{"api.filters": {"environment": "test"}},
    )
    etl(
        *("backfill", "--from", LOAD_FROM, "--to", LOAD_TO),
        wh=wh,
        api=api,
        config=test_config,
        check=True,
    )
    return config


def make_report(
    wh: TestWarehouse, config: Path, out: Path, *args: str, start: str = REPORT_FROM
) -> tuple[str, Page]:
    result = etl(
        *("report", "--from", start, "--to", REPORT_TO, "--out", str(out), *args),
        wh=wh,
        config=config,
        check=True,
    )
    assert str(out) in result.stderr
    html = out.read_text(encoding="utf-8")
    return html, read_page(html)


def view_days(wh: TestWarehouse, environment: str | None) -> dict[str, dict[str, Any]]:
    """daily_metrics for the report's dates: the view's own rows for one environment, the
    counts summed over environments otherwise."""
    engine = wh.engine()
    where = "local_date >= :start AND local_date < :end"
    params: dict[str, Any] = {"start": date(2024, 3, 28), "end": date(2024, 4, 2)}
    if engine.dialect.name == "sqlite":
        params = {k: v.isoformat() for k, v in params.items()}
    try:
        with engine.connect() as conn:
            if environment is not None:
                rows = conn.execute(
                    text(
                        f"SELECT * FROM {wh.table('daily_metrics')} "
                        f"WHERE {where} AND environment = :env"
                    ),
                    {**params, "env": environment},
                ).mappings()
                return {str(r["local_date"]): dict(r) for r in rows}
            sums = ", ".join(
                f"SUM({c}) AS {c}"
                for c in (
                    *(c for c in COUNTS.values() if not c.endswith(("rate", "messages"))),
                    "messages",
                )
            )
            rows = conn.execute(
                text(
                    f"SELECT local_date, {sums} FROM {wh.table('daily_metrics')} "
                    f"WHERE {where} GROUP BY local_date"
                ),
                params,
            ).mappings()
            out = {}
            for r in rows:
                row = {k: int(v) for k, v in r.items() if k != "local_date"}
                for rate, (num, den) in RATES.items():
                    n, d = row[COUNTS.get(num, num)], row[COUNTS[den]]
                    row[COUNTS.get(rate, rate)] = n / d if d else None
                out[str(r["local_date"])] = row
            return out
    finally:
        engine.dispose()


def assert_daily_table_is_the_view(page: Page, expected: dict[str, dict[str, Any]]) -> None:
    rows = body_rows(page, "daily-table")
    assert [attrs["data-date"] for attrs, _ in rows] == REPORT_DATES
    for attrs, cells in rows:
        values = [c[0].get("data-value") for c in cells[1:]]
        view = expected.get(attrs["data-date"])
        assert view is not None, f"{attrs['data-date']}: no conversations in the view"
        for value, (name, column) in zip(values, COUNTS.items(), strict=True):
            want = view[column]
            if want is None:
                assert value == "", (attrs["data-date"], name)
            elif name.endswith(("rate", "messages")):
                assert float(value or "nan") == pytest.approx(float(want), rel=1e-12), name
            else:
                assert int(value or -1) == int(want), (attrs["data-date"], name)


def test_report_shows_what_the_views_hold(
    warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    config = load_two_environments(warehouse, make_sim, tmp_path)

    html, page = make_report(warehouse, config, tmp_path / "all.html")
    assert_self_contained(html, page)
    assert_charts(page, at_least=7)
    assert "Europe/Oslo" in page.text and "2024-03-28 to 2024-04-02 (end exclusive)" in page.text
    assert "Environment all" in page.text
    assert_daily_table_is_the_view(page, view_days(warehouse, None))
    assert body_rows(page, "intents-table") and body_rows(page, "buttons-table")
    assert body_rows(page, "pipeline-table")  # the two backfills' windows, today (UTC)
    assert len(body_rows(page, "watermark-table")) == 2
    if warehouse.schema:
        assert f"(schema {warehouse.schema})" in page.text

    html, live = make_report(warehouse, config, tmp_path / "live.html", "--environment", "live")
    assert_self_contained(html, live)
    assert "Environment live" in live.text
    assert_daily_table_is_the_view(live, view_days(warehouse, "live"))
    conversations = [int(c[1][0].get("data-value", "0")) for _, c in body_rows(page, "daily-table")]
    only_live = [int(c[1][0].get("data-value", "0")) for _, c in body_rows(live, "daily-table")]
    assert sum(only_live) < sum(conversations)  # the "test" conversations are left out

    html, empty = make_report(
        warehouse, config, tmp_path / "empty.html", "--environment", "nowhere"
    )
    assert_self_contained(html, empty)
    assert "No data for this range" in empty.text
    assert "daily-table" not in empty.tables
    assert len(empty.svgs) == 2  # the pipeline's charts: its health is not the range's


# -- in a real browser -----------------------------------------------------------------------


def need_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing (Debian: apt-get install chromium)"
    if IN_CI:
        pytest.fail(f"{message}; CI never skips the browser test", pytrace=False)
    pytest.skip(message)


CHART_CHECK = """() => Array.from(document.querySelectorAll('svg')).map((svg) => {
    const box = svg.getBoundingClientRect();
    const drawn = Array.from(svg.querySelectorAll('.role-mark path, .role-mark rect, .role-mark line'))
        .filter((el) => { const b = el.getBBox(); return b.width > 0 || b.height > 0; });
    return {
        label: svg.getAttribute('aria-label'),
        width: box.width,
        height: box.height,
        drawn: drawn.length,
        texts: svg.querySelectorAll('text').length,
        right: box.right,
    };
})"""


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_opens_offline_in_headless_chromium(
    sqlite_warehouse: TestWarehouse, make_sim: Any, tmp_path: Path
) -> None:
    need_chromium()
    from playwright.sync_api import Request, Route, sync_playwright

    config = load_two_environments(sqlite_warehouse, make_sim, tmp_path)
    report = tmp_path / "report.html"
    make_report(sqlite_warehouse, config, report)

    requested: list[str] = []
    errors: list[str] = []

    def block(route: Route, request: Request) -> None:
        if request.url.startswith("file:"):
            route.continue_()
        else:
            requested.append(request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            context.route("**/*", block)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda r: requested.append(f"failed: {r.url}"))
            page.goto(report.as_uri(), wait_until="load")
            charts = page.evaluate(CHART_CHECK)
            width = page.evaluate("() => document.documentElement.clientWidth")
            scroll = page.evaluate("() => document.documentElement.scrollWidth")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert requested == [], "the report asked the network for something"
    assert errors == []
    assert len(charts) >= 5
    for chart in charts:
        assert chart["width"] > 100 and chart["height"] > 100, chart
        assert chart["drawn"] > 0, f"{chart['label']}: no mark drawn"
        assert chart["texts"] > 3, chart
        assert chart["right"] <= width, f"{chart['label']} runs off the page"
    assert scroll <= width, "the page scrolls sideways at 1200 px"
    shot_width, shot_height = png_size(shot)
    assert shot_width == 1200 and shot_height > 2000
    assert shot.stat().st_size > 50_000  # charts, tables and text, not a blank page


def test_an_intents_title_survives_a_later_day_without_one(
    migrated: TestWarehouse, tmp_path: Path
) -> None:
    """The report took each intent's title from its latest day, even a day whose references
    carried none: 'Intent #1014' where the intents table and earlier days had its title."""
    import copy
    import json

    from etl.report.queries import read_report
    from tests.conftest import SEED_EXPORT

    query_info, conversation, post_query_info = json.loads(SEED_EXPORT.read_text())
    later = copy.deepcopy(conversation)
    later["id"] = conversation["id"] + 1
    for k, message in enumerate(later["messages"]):
        message["id"] = 70_000_000 + k
        message["time"] = message["time"].replace("2021-01-28", "2021-01-29")
        for ref in (message.get("intents") or {}).values():
            ref.pop("title", None)  # the same intent, referred to without its title
    later["time"] = {k: v.replace("2021-01-28", "2021-01-29") for k, v in later["time"].items()}
    query_info["conversations"] = post_query_info["conversations"] = 2
    path = tmp_path / "two-days.json"
    path.write_text(json.dumps([query_info, conversation, later, post_query_info]))
    etl("load-file", str(path), wh=migrated, check=True)
    engine = migrated.engine()
    try:
        with engine.connect() as conn:
            data = read_report(
                conn, schema=migrated.schema, start=date(2021, 1, 1), end=date(2021, 2, 1),
                environment=None, timezone="UTC", warehouse="test", now=datetime.now(UTC),
            )  # fmt: skip
    finally:
        engine.dispose()
    assert [(i.intent_id, i.title) for i in data.intents if i.intent_id == 1014] == [
        (1014, "All content")
    ]


def test_count_axes_label_each_whole_number_once() -> None:
    """A day with 2 conversations and one with 1: ticks at 0.5 would read 0, 1, 1, 2, 2."""
    import re

    from etl.report import charts

    start = date(2024, 6, 3)
    days = [DayCounts(start, 2, 1, 1, 0, 4, 1, 0), DayCounts(start + timedelta(days=4), 1, 1)]
    data = ReportData(
        start=start,
        end=start + timedelta(days=5),
        timezone="UTC",
        warehouse="sqlite:///dw.db",
        generated_at=GENERATED,
        days=days,
        load_days=[LoadDay(start, 1, 0, 3, 1.0), LoadDay(start + timedelta(days=1), 2, 1, 0, 1.0)],
    )
    for chart in (charts.conversations_chart(data), charts.windows_chart(data)):
        assert chart is not None
        svg = charts.render(chart)
        groups = re.findall(r'<g class="mark-text role-axis-label"[^>]*>(.*?)</g>', svg, re.S)
        numbers = [t for g in groups for t in re.findall(r">([0-9,]+)</text>", g)]
        assert numbers and len(numbers) == len(set(numbers)), numbers
