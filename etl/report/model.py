"""What a report shows, as plain values: read by `queries`, drawn by `charts` and `page`.

Every rate is recomputed from summed counts (never an average of daily rates), and is None
where its denominator is zero: "no conversations" is not "0 % contained".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class DayCounts:
    """One local date's counts (daily_metrics, summed over environments unless filtered)."""

    local_date: date
    conversations: int = 0
    engaged: int = 0
    contained: int = 0
    handed_over: int = 0
    messages: int = 0
    questions: int = 0
    not_understood: int = 0

    @property
    def containment_rate(self) -> float | None:
        return ratio(self.contained, self.engaged)

    @property
    def handover_rate(self) -> float | None:
        return ratio(self.handed_over, self.conversations)

    @property
    def not_understood_rate(self) -> float | None:
        return ratio(self.not_understood, self.questions)

    @property
    def avg_messages(self) -> float | None:
        return ratio(self.messages, self.conversations)


@dataclass(frozen=True)
class IntentCount:
    intent_id: int | None  # None: questions without a predicted intent
    title: str | None
    questions: int


@dataclass(frozen=True)
class ButtonCount:
    button_id: int | None
    text: str | None  # the latest text (button_metrics)
    shown: int
    clicked: int

    @property
    def click_through_rate(self) -> float | None:
        return ratio(self.clicked, self.shown)


@dataclass(frozen=True)
class LoadDay:
    """The windows the pipeline ran on one UTC date (pipeline_daily)."""

    load_date: date
    windows: int
    failed_windows: int
    conversations: int
    seconds: float

    @property
    def throughput(self) -> float | None:
        """Conversations per second of window time."""
        return ratio(self.conversations, self.seconds)


@dataclass(frozen=True)
class Watermark:
    state_key: str
    site: str | None
    environment: str | None
    watermark: datetime
    lag: timedelta


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows; `days` has every date of [start, end), zeros included."""

    start: date
    end: date  # exclusive
    timezone: str
    warehouse: str  # the display URL: never a password
    generated_at: datetime
    environment: str | None = None
    days: list[DayCounts] = field(default_factory=list)
    avg_duration_seconds: float | None = None
    intents: list[IntentCount] = field(default_factory=list)  # the top ones, most asked first
    intent_questions: int = 0  # questions over all intents, the top ones' and the others'
    intent_count: int = 0  # how many intents were asked about in all
    buttons: list[ButtonCount] = field(default_factory=list)  # the most shown first
    button_totals: ButtonCount = field(default_factory=lambda: ButtonCount(None, None, 0, 0))
    button_count: int = 0
    load_days: list[LoadDay] = field(default_factory=list)  # oldest first
    watermarks: list[Watermark] = field(default_factory=list)

    @property
    def totals(self) -> DayCounts:
        """The whole range's counts (the date is the range's start)."""
        return DayCounts(
            self.start,
            conversations=sum(d.conversations for d in self.days),
            engaged=sum(d.engaged for d in self.days),
            contained=sum(d.contained for d in self.days),
            handed_over=sum(d.handed_over for d in self.days),
            messages=sum(d.messages for d in self.days),
            questions=sum(d.questions for d in self.days),
            not_understood=sum(d.not_understood for d in self.days),
        )

    @property
    def has_conversations(self) -> bool:
        return any(d.conversations for d in self.days)

    @property
    def load_totals(self) -> LoadDay | None:
        if not self.load_days:
            return None
        return LoadDay(
            self.load_days[-1].load_date,
            windows=sum(d.windows for d in self.load_days),
            failed_windows=sum(d.failed_windows for d in self.load_days),
            conversations=sum(d.conversations for d in self.load_days),
            seconds=sum(d.seconds for d in self.load_days),
        )


def dates(start: date, end: date) -> list[date]:
    """Every date of [start, end)."""
    return [start + timedelta(days=n) for n in range((end - start).days)]
