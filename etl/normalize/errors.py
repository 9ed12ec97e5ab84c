"""The normalizer's data error: which conversation, which field, and what to do about it."""

from __future__ import annotations

from typing import Any

from etl.errors import DataError

# How much of a value an error message shows: enough to recognise it, not a whole field that
# may be long or hold personal data (messages go to logs, etl_runs and etl_rejects).
_SHOWN = 80


def shown(value: Any) -> str:
    """`repr(value)`, cut to a recognisable length."""
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}… ({len(text):,} characters)"


class NormalizeError(DataError):
    """A conversation the normalizer cannot turn into rows (it breaks Export API v3's shape)."""

    def __init__(
        self,
        problem: str,
        *,
        conversation_id: int | None = None,
        position: int | None = None,  # 0-based, in the export stream
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.conversation_id = conversation_id
        self.position = position
        self.field = field
        super().__init__(self._message())

    def _message(self) -> str:
        if self.conversation_id is not None:
            how = (
                f"inspect it with a one-conversation export (filter conversation_ids="
                f"[{self.conversation_id}]) and report the malformed export to the vendor"
            )
        else:
            how = "inspect the window's raw export and report the malformed export to the vendor"
        return (
            f"{self.what}; the window cannot be loaded as is: {how}, or set "
            'pipeline.on_bad_conversation = "quarantine" to load the rest of the window'
        )

    @property
    def what(self) -> str:
        """Which conversation and field, and the problem (what etl_rejects.error says)."""
        if self.conversation_id is not None:
            who = f"conversation {self.conversation_id}"
        elif self.position is not None:
            who = f"conversation #{self.position + 1} of the stream (no usable id)"
        else:
            who = "a conversation (no usable id)"
        where = f", field {self.field!r}" if self.field else ""
        return f"{who}{where}: {self.problem}"
