"""Normalizer: exported conversations -> row tuples for the warehouse tables (pure, no I/O)."""

from etl.normalize.columns import CHILD_TABLES, DIMENSION_TABLES, TABLE_COLUMNS
from etl.normalize.core import NormalizedConversation, normalize_conversation
from etl.normalize.digest import Digest, content_digest
from etl.normalize.errors import NormalizeError

__all__ = [
    "CHILD_TABLES",
    "DIMENSION_TABLES",
    "TABLE_COLUMNS",
    "Digest",
    "NormalizeError",
    "NormalizedConversation",
    "content_digest",
    "normalize_conversation",
]
