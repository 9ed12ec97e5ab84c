"""Normalizer: exported conversations -> row tuples for the warehouse tables (pure, no I/O)."""

from etl.normalize.columns import TABLE_COLUMNS
from etl.normalize.core import NormalizedConversation, iter_rows, normalize_conversation
from etl.normalize.errors import NormalizeError

__all__ = [
    "TABLE_COLUMNS",
    "NormalizeError",
    "NormalizedConversation",
    "iter_rows",
    "normalize_conversation",
]
