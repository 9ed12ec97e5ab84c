"""`etl report`: one self-contained HTML page of the warehouse's metrics over a date range.

`queries` reads the metric views into plain values (`model`), `charts` draws them with altair
and renders SVG offline with vl-convert, `page` writes the HTML around them. The renderer is
an optional extra (`pip install 'convo-etl[report]'`), imported only when a report is made.
"""

from __future__ import annotations

import contextlib
import importlib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import Engine

from etl.config import Settings
from etl.errors import ConfigError
from etl.report.model import ReportData

INSTALL_HINT: Final = "pip install 'convo-etl[report]'"
_RENDERER: Final = {"altair": "altair", "vl_convert": "vl-convert-python"}


def require_renderer() -> None:
    """Fail with the install command when the chart renderer is not installed."""
    missing = []
    for module, package in _RENDERER.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise ConfigError(
            f"etl report needs {' and '.join(missing)}, which are not installed: {INSTALL_HINT}"
        )


def build_page(data: ReportData) -> str:
    """The report page for `data` (no database needed)."""
    from etl.report.charts import figures
    from etl.report.page import render_page

    return render_page(data, figures(data))


def write_report(
    engine: Engine,
    settings: Settings,
    out: Path,
    *,
    start: date,
    end: date,
    environment: str | None = None,
    now: datetime | None = None,
) -> ReportData:
    """Read the figures for local dates [start, end) in reporting.timezone, write the page.

    Refuses (ConfigError) a warehouse without the metric views or with local dates of
    another zone, and an `out` that cannot be written; database errors propagate.
    """
    from etl.load.localtime import zone_name
    from etl.report.queries import check_warehouse, read_report

    zone = settings.reporting.timezone
    where = settings.warehouse.display_url
    shown = f"{where} (schema {settings.warehouse.schema})" if settings.warehouse.schema else where
    with engine.connect() as conn:
        check_warehouse(conn, settings.warehouse.schema, zone, where)
        data = read_report(
            conn,
            schema=settings.warehouse.schema,
            start=start,
            end=end,
            environment=environment,
            timezone=zone_name(zone),
            warehouse=shown,
            now=(now or datetime.now(UTC)).astimezone(zone),
        )
    page = build_page(data)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)  # a reader never sees half a page
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return data


__all__ = ["INSTALL_HINT", "ReportData", "build_page", "require_renderer", "write_report"]
