"""How a run reports progress: a protocol, and a plain logging implementation."""

from __future__ import annotations

import logging
from typing import Protocol

from etl.load.loader import OLDER, OUTCOMES
from etl.load.state import WindowReport
from etl.windows import Window

log = logging.getLogger("etl.pipeline")


class Progress(Protocol):
    def begin(self, windows: int, label: str) -> None: ...

    def window_started(self, window: Window | str, attempt: int) -> None: ...

    def conversations(self, count: int) -> None: ...

    def window_retrying(
        self, window: Window, attempt: int, error: BaseException, wait: float
    ) -> None: ...

    def window_done(self, report: WindowReport) -> None: ...

    def end(self) -> None: ...


def describe_outcomes(counts: dict[str, int]) -> str:
    """ "3 new, 1 changed, 12 unchanged, 0 older, 0 rejected" (every outcome, in one order)."""
    return ", ".join(f"{counts.get(name, 0)} {name}" for name in OUTCOMES)


class LogProgress:
    """One log line per window: for cron, systemd and orchestrators."""

    def begin(self, windows: int, label: str) -> None:
        self._total = windows
        self._done = 0
        log.info("%s: %d window(s) to load", label, windows)

    def window_started(self, window: Window | str, attempt: int) -> None:
        log.debug("window %s: attempt %d started", window, attempt)

    def conversations(self, count: int) -> None:
        """Per-conversation progress is for terminals only."""

    def window_retrying(
        self, window: Window, attempt: int, error: BaseException, wait: float
    ) -> None:
        log.warning("attempt %d failed: %s; retrying in %.1fs", attempt, error, wait)

    def window_done(self, report: WindowReport) -> None:
        self._done += 1
        rate = report.conversations / report.seconds if report.seconds > 0 else 0.0
        log.info(
            "%s loaded (%d/%d): %d conversations (%s), %d rows, %d bytes, %.1fs, "
            "%.0f conv/s, attempts %d",
            report.label,
            self._done,
            self._total,
            report.conversations,
            describe_outcomes(report.conversation_outcomes),
            sum(report.rows.values()),
            report.bytes,
            report.seconds,
            rate,
            report.attempts,
        )
        older = report.conversation_outcomes.get(OLDER, 0)
        if older and not report.export_time_known:
            log.warning(
                "%s: the file has no query_info.current_time, so its conversations only replace "
                "stored copies without a known export time: %d stored copies from a known "
                "export were kept; load it with `etl load-file --replace` to replace them",
                report.label,
                older,
            )
        elif older:
            log.warning(
                "%s: %d conversations were not loaded: the warehouse holds them from a later "
                "export",
                report.label,
                older,
            )

    def end(self) -> None:
        """Nothing to tear down."""
