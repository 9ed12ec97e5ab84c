"""The normalizer's data error: which conversation, which field, and what to do about it."""

from __future__ import annotations

from etl.errors import DataError


class NormalizeError(DataError):
    """A conversation the normalizer cannot turn into rows (it breaks Export API v3's shape)."""

    def __init__(
        self,
        problem: str,
        *,
        conversation_id: int | None = None,
        position: int | None = None,
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.conversation_id = conversation_id
        self.position = position
        self.field = field
        super().__init__(self._message())

    def _message(self) -> str:
        if self.conversation_id is not None:
            who = f"conversation {self.conversation_id}"
            how = (
                f"inspect it with a one-conversation export (filter conversation_ids="
                f"[{self.conversation_id}]) and report the malformed export to the vendor"
            )
        elif self.position is not None:
            who = f"conversation #{self.position} of the window (no usable id)"
            how = "inspect the window's raw export and report the malformed export to the vendor"
        else:
            who = "a conversation (no usable id)"
            how = "inspect the window's raw export and report the malformed export to the vendor"
        where = f", field {self.field!r}" if self.field else ""
        return f"{who}{where}: {self.problem}; the window cannot be loaded as is: {how}"
