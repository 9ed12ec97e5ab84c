"""A conversation that cannot be loaded, as the quarantine keeps it (pure data, no I/O)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from etl.normalize.fields import INT_MAX, INT_MIN

# Exact JSON for a conversation the splitter did not cut out of the body (ijson parsed it):
# integers beyond 64 bits and lone surrogates written as they were read.
_exact_json = json.JSONEncoder(ensure_ascii=True, check_circular=False).encode


@dataclass(frozen=True)
class Rejected:
    """A conversation quarantined in `etl_rejects`: where it was, why, and its JSON text."""

    position: int | None  # 0-based, in its export stream
    conversation_id: int | None  # when it is a 64-bit integer
    error: str
    body: str


def rejected(
    position: int | None, conversation: Any, text: bytes | str | None, error: str
) -> Rejected:
    """A Rejected with `text` (the bytes the server sent) or, without it, exact JSON made here."""
    cid = conversation.get("id") if isinstance(conversation, dict) else None
    if cid.__class__ is not int or not INT_MIN <= cid <= INT_MAX:
        cid = None
    if isinstance(text, bytes):
        body = text.decode("utf-8", "backslashreplace")
    elif text is not None:
        body = text
    else:
        try:
            body = _exact_json(conversation)
        except (RecursionError, TypeError, ValueError) as exc:
            # Nested too deeply to encode again, and the splitter leaves such a conversation
            # to ijson, so there is no text as sent: say so (reprocessing keeps it).
            body = json.dumps(
                {
                    "_not_kept": "the conversation could not be encoded as JSON again "
                    f"({type(exc).__name__})",
                    "id": cid,
                    "position": position,
                }
            )
    return Rejected(position, cid, error, body)
