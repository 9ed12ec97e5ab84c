"""A redacting secret type and a registry that scrubs known secrets from any text."""

from __future__ import annotations

import threading

_REDACTED = "**********"
_lock = threading.Lock()
_known: set[str] = set()


class Secret:
    """A string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("a secret cannot be empty")
        self._value = value
        register(value)

    def reveal(self) -> str:
        """The value, for the one place that sends it (an HTTP header or form)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_REDACTED}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def register(value: str) -> None:
    """Remember a secret value (token, password) so `scrub` removes it from text."""
    # Very short values would redact innocent text; real secrets are long.
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


# The shortest start of a secret that `scrub(..., cut=True)` masks at the end of a text.
_SHORTEST_CUT = 4


def scrub(text: str, *, cut: bool = False) -> str:
    """Replace every registered secret in `text` with a fixed mask.

    `cut`: `text` was cut from a longer one (an error body read only so far), so it may end
    with the start of a secret, which no whole value matches: that is masked too.
    """
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, _REDACTED)
    if cut:
        for value in known:
            for length in range(min(len(value) - 1, len(text)), _SHORTEST_CUT - 1, -1):
                if text.endswith(value[:length]):
                    return text[:-length] + _REDACTED
    return text
