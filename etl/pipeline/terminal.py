"""A live progress display for terminals: windows done/total, conversations, rate, ETA."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from etl.load.state import WindowReport
from etl.pipeline.progress import LogProgress

log = logging.getLogger("etl.pipeline")


class _ConsoleHandler(logging.Handler):
    """Prints log records through the live display's console, so lines land above the bar."""

    def __init__(self, console: Console, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self._console = console
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self._console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)


class TerminalProgress(LogProgress):
    """Rich progress bar on stderr; window lines still go to the log."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "windows · {task.fields[conversations]:,} conversations · {task.fields[rate]:,.0f}/s"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None
        self._conversations = 0
        self._swapped: list[tuple[logging.Handler, logging.Handler]] = []

    def begin(self, windows: int, label: str) -> None:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler):
                replacement = _ConsoleHandler(self._progress.console, handler.formatter)
                root.removeHandler(handler)
                root.addHandler(replacement)
                self._swapped.append((handler, replacement))
        super().begin(windows, label)
        self._progress.start()
        self._task = self._progress.add_task(label, total=windows, conversations=0, rate=0.0)

    def conversations(self, count: int) -> None:
        self._conversations += count
        if self._task is not None:
            elapsed = self._progress.tasks[0].elapsed or 0.0
            rate = self._conversations / elapsed if elapsed > 0 else 0.0
            self._progress.update(self._task, conversations=self._conversations, rate=rate)

    def window_done(self, report: WindowReport) -> None:
        super().window_done(report)
        if self._task is not None:
            self._progress.advance(self._task)

    def end(self) -> None:
        self._progress.stop()
        root = logging.getLogger()
        for original, replacement in self._swapped:
            root.removeHandler(replacement)
            root.addHandler(original)
        self._swapped.clear()
